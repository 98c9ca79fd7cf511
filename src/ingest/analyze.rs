//! Track analysis at ingest. [`LoudnessMeter`] measures EBU R128 / ITU-R BS.1770 loudness
//! (integrated loudness, loudness range, true peak and sample peak) with the ebur128 crate in
//! its histogram mode (0.1 LU bins, so at most 0.05 LU off), so its memory stays fixed however
//! long the track is; true peak is read at 4x oversampling (2x from 96 kHz). [`WaveformBuilder`]
//! collects min/max peaks for a player's seek bar with bounded memory: buckets start at one
//! frame and, whenever the pair count would pass `2 * target`, adjacent pairs are merged and
//! the bucket size doubles. The result serialises as audiowaveform / peaks.js "waveform data
//! JSON".

use ebur128::{EbuR128, Mode};
use serde::{Deserialize, Serialize};

/// Integrated loudness reported when nothing passes the gates (silence), in LUFS.
const LOUDNESS_FLOOR: f64 = -70.0;
/// Peak reported for digital silence, in dBFS / dBTP.
const PEAK_FLOOR: f64 = -144.0;
/// Upper bound for any reported level, so that non-finite input still gives finite figures.
const LEVEL_CEILING: f64 = 200.0;

/// Errors from loudness measurement.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// A sample rate of zero was given.
    #[error("cannot measure loudness at {0} Hz")]
    InvalidRate(u32),
    /// The input slice does not hold whole stereo frames.
    #[error("interleaved stereo input must hold an even number of samples, got {0}")]
    OddLength(usize),
    /// The EBU R128 meter failed (the text says while doing what).
    #[error("EBU R128 meter failed while {0}: {1}")]
    Meter(&'static str, #[source] ebur128::Error),
}

/// Result of the loudness measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoudnessFigures {
    /// Gated integrated loudness (BS.1770-4), LUFS; -70.0 when nothing passes the gates.
    pub integrated_lufs: f64,
    /// Loudness range (EBU Tech 3342), LU; 0.0 when undefined.
    pub loudness_range_lu: f64,
    /// Maximum true (inter-sample) peak over both channels, dBTP; -144.0 for silence.
    pub true_peak_dbtp: f64,
    /// Maximum absolute sample value over both channels, dBFS; -144.0 for silence.
    pub sample_peak_dbfs: f64,
}

/// Streaming EBU R128 meter for interleaved stereo f32.
pub struct LoudnessMeter {
    meter: EbuR128,
}

/// Maps a measured level to a finite value: NaN and anything below `floor` give `floor`.
fn finite_level(value: f64, floor: f64) -> f64 {
    if value.is_nan() {
        floor
    } else {
        value.clamp(floor, LEVEL_CEILING)
    }
}

impl LoudnessMeter {
    /// A meter for stereo (left, right) at `sample_rate` Hz.
    pub fn new(sample_rate: u32) -> Result<Self, AnalyzeError> {
        if sample_rate == 0 {
            return Err(AnalyzeError::InvalidRate(sample_rate));
        }
        // Histogram mode keeps the gating blocks in fixed bins (0.1 LU wide) instead of a list
        // that grows with the track; it costs at most 0.05 LU of precision.
        let mode = Mode::I | Mode::LRA | Mode::TRUE_PEAK | Mode::SAMPLE_PEAK | Mode::HISTOGRAM;
        let meter = EbuR128::new(2, sample_rate, mode)
            .map_err(|e| AnalyzeError::Meter("creating the meter", e))?;
        Ok(Self { meter })
    }

    /// Feeds interleaved stereo samples (any number of whole frames).
    pub fn push(&mut self, interleaved: &[f32]) -> Result<(), AnalyzeError> {
        if interleaved.len() % 2 != 0 {
            return Err(AnalyzeError::OddLength(interleaved.len()));
        }
        let added = self.meter.add_frames_f32(interleaved);
        added.map_err(|e| AnalyzeError::Meter("adding frames", e))
    }

    /// Silence gives integrated = -70.0 (clamp -inf / NaN to -70.0), true peak of silence = -144.0 (clamp), LRA 0.0. All values finite.
    pub fn finish(self) -> Result<LoudnessFigures, AnalyzeError> {
        let m = &self.meter;
        let fail = |what| move |e| AnalyzeError::Meter(what, e);
        let integrated = m.loudness_global().map_err(fail("reading loudness"))?;
        let range = m.loudness_range().map_err(fail("reading loudness range"))?;
        let (mut true_peak, mut sample_peak) = (0.0f64, 0.0f64);
        for channel in 0..2 {
            true_peak = true_peak.max(m.true_peak(channel).map_err(fail("reading true peak"))?);
            sample_peak = sample_peak.max(m.sample_peak(channel).map_err(fail("reading peak"))?);
        }
        Ok(LoudnessFigures {
            integrated_lufs: finite_level(integrated, LOUDNESS_FLOOR),
            loudness_range_lu: finite_level(range, 0.0),
            true_peak_dbtp: finite_level(20.0 * true_peak.log10(), PEAK_FLOOR),
            sample_peak_dbfs: finite_level(20.0 * sample_peak.log10(), PEAK_FLOOR),
        })
    }
}

/// Waveform peaks for a player's seek bar: min/max pairs over fixed-size buckets of frames.
///
/// Serialises as audiowaveform's "waveform data JSON" (read by peaks.js / waveform-data.js):
/// `{"version":2,"channels":1,"sample_rate":48000,"samples_per_pixel":512,"bits":16,
/// "length":N,"data":[min0,max0,min1,max1,...]}`. Both stereo channels are folded into the
/// one waveform channel. `version` is 2 because the format only defines `channels` from
/// version 2 on; readers of version 1 ignore the extra field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Waveform {
    /// Format version of the JSON shape: 2.
    pub version: u32,
    /// Waveform channels in `data`: always 1 (left and right folded together).
    pub channels: u32,
    /// Sample rate of the analysed audio, Hz.
    pub sample_rate: u32,
    /// Frames per min/max pair (a power of two); the last pair may cover fewer.
    #[serde(rename = "samples_per_pixel")]
    pub samples_per_peak: u64,
    /// Resolution of the values in `data`: always 16.
    pub bits: u32,
    /// Number of min/max pairs.
    pub length: usize,
    /// Interleaved min,max pairs over both channels (min of L and R, max of L and R), scaled to i16 (-32768..32767).
    pub data: Vec<i16>,
}

/// Streaming builder of a [`Waveform`] with memory bounded by `2 * target` pairs.
pub struct WaveformBuilder {
    sample_rate: u32,
    /// Most pairs kept: `2 * target`, an even number.
    cap: usize,
    bucket_frames: u64,
    /// Finished buckets as (min, max).
    pairs: Vec<(f32, f32)>,
    /// The open bucket: (min, max) and how many samples (not frames) it holds.
    open: (f32, f32),
    samples: u64,
}

/// (min, max) of an empty bucket.
const EMPTY: (f32, f32) = (f32::INFINITY, f32::NEG_INFINITY);

/// Linear sample to the i16 scale of the waveform format.
fn to_i16(value: f32) -> i16 {
    // `as` saturates (and maps NaN to 0), which is the clamp wanted here.
    (value * 32768.0).round() as i16
}

impl WaveformBuilder {
    /// Aims for between `target` and 2*`target` pairs whatever the length: starts with a small bucket (e.g. 256 frames) and, when the pair count would exceed 2*target, merges adjacent pairs and doubles the bucket size. Memory bounded by 2*target pairs.
    ///
    /// Here the first bucket is one frame, so any input of at least `target` frames gets
    /// `target..=2 * target` pairs; a `target` of 0 is taken as 1.
    pub fn new(sample_rate: u32, target: usize) -> Self {
        let cap = target.max(1) * 2;
        Self {
            sample_rate,
            cap,
            bucket_frames: 1,
            pairs: Vec::with_capacity(cap),
            open: EMPTY,
            samples: 0,
        }
    }

    /// Feeds interleaved stereo samples; an odd-length slice is fine (frames may straddle calls).
    pub fn push(&mut self, interleaved: &[f32]) {
        let mut rest = interleaved;
        while !rest.is_empty() {
            let room = self.bucket_frames * 2 - self.samples;
            // `room` is at most the bucket size; if it overflows usize the slice is shorter anyway.
            let take = usize::try_from(room).unwrap_or(usize::MAX).min(rest.len());
            let (now, later) = rest.split_at(take);
            let (lo, hi) = now
                .iter()
                .fold(self.open, |(lo, hi), &v| (lo.min(v), hi.max(v)));
            self.open = (lo, hi);
            self.samples += take as u64;
            rest = later;
            if self.samples == self.bucket_frames * 2 {
                if self.pairs.len() == self.cap {
                    // The open bucket becomes the first half of a bucket twice as long.
                    self.halve();
                } else {
                    self.close_bucket();
                }
            }
        }
    }

    /// Includes the final partial bucket.
    pub fn finish(mut self) -> Waveform {
        if self.samples > 0 {
            if self.pairs.len() == self.cap {
                self.halve();
            }
            self.close_bucket();
        }
        Waveform {
            version: 2,
            channels: 1,
            sample_rate: self.sample_rate,
            samples_per_peak: self.bucket_frames,
            bits: 16,
            length: self.pairs.len(),
            data: self
                .pairs
                .iter()
                .flat_map(|&(lo, hi)| [to_i16(lo), to_i16(hi)])
                .collect(),
        }
    }

    /// Stores the open bucket as a pair and starts a new one.
    fn close_bucket(&mut self) {
        self.pairs.push(std::mem::replace(&mut self.open, EMPTY));
        self.samples = 0;
    }

    /// Merges adjacent pairs and doubles the bucket size (the pair count is even).
    fn halve(&mut self) {
        let half = self.pairs.len() / 2;
        for i in 0..half {
            let (a, b) = (self.pairs[2 * i], self.pairs[2 * i + 1]);
            self.pairs[i] = (a.0.min(b.0), a.1.max(b.1));
        }
        self.pairs.truncate(half);
        self.bucket_frames *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::{FRAC_PI_4, TAU};

    /// Interleaved stereo sine (both channels equal), `frames` long.
    fn sine(rate: u32, freq: f64, amp: f64, phase: f64, frames: usize) -> Vec<f32> {
        (0..frames)
            .flat_map(|i| {
                let v = (amp * (TAU * freq * i as f64 / f64::from(rate) + phase).sin()) as f32;
                [v, v]
            })
            .collect()
    }

    /// A programme with loudness changes and inter-sample peaks: 1 kHz at -20 dBFS, a 12 kHz
    /// sine sampled 45 degrees off its peaks, then quiet noise from a fixed LCG.
    fn programme(rate: u32) -> Vec<f32> {
        let n = rate as usize * 8;
        let mut signal = sine(rate, 1000.0, 0.1, 0.0, n);
        signal.extend(sine(rate, 12_000.0, 0.3, FRAC_PI_4, n));
        let mut seed = 0x1234_5678u32;
        signal.extend((0..2 * n).map(|_| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (f64::from(seed) / f64::from(u32::MAX) - 0.5) as f32 * 0.1
        }));
        signal
    }

    fn measure(rate: u32, signal: &[f32], chunks: &[usize]) -> LoudnessFigures {
        let mut meter = LoudnessMeter::new(rate).unwrap();
        let mut rest = signal;
        for &c in chunks.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (now, later) = rest.split_at((2 * c).min(rest.len()));
            meter.push(now).unwrap();
            rest = later;
        }
        meter.finish().unwrap()
    }

    #[test]
    fn sine_at_minus_20_dbfs_reads_minus_20_lufs() {
        // BS.1770: a 1 kHz sine of amplitude A in both channels has a mean square of A^2 / 2
        // per channel, the K-filter gain at 1 kHz (+0.691 dB) cancels the -0.691 offset, so
        // L = 10 log10(2 * A^2 / 2) = 20 log10(A) = -20.0 LUFS for A = 0.1.
        let f = measure(48_000, &sine(48_000, 1e3, 0.1, 0.0, 20 * 48_000), &[4096]);
        assert!((f.integrated_lufs + 20.0).abs() < 0.1, "{f:?}");
        assert!(f.loudness_range_lu.abs() < 0.1, "{f:?}");
        assert!((f.true_peak_dbtp + 20.0).abs() < 0.1, "{f:?}");
        assert!((f.sample_peak_dbfs + 20.0).abs() < 0.01, "{f:?}");
    }

    #[test]
    fn silence_gives_finite_floor_values_and_bad_input_is_rejected() {
        let want = LoudnessFigures {
            integrated_lufs: -70.0,
            loudness_range_lu: 0.0,
            true_peak_dbtp: -144.0,
            sample_peak_dbfs: -144.0,
        };
        assert_eq!(measure(44_100, &vec![0.0; 2 * 44_100 * 5], &[1000]), want);
        assert_eq!(LoudnessMeter::new(48_000).unwrap().finish().unwrap(), want);
        assert!(matches!(
            LoudnessMeter::new(0),
            Err(AnalyzeError::InvalidRate(0))
        ));
        let odd = LoudnessMeter::new(48_000).unwrap().push(&[0.0; 3]);
        assert!(matches!(odd, Err(AnalyzeError::OddLength(3))));
    }

    #[test]
    fn chunking_does_not_change_loudness() {
        let signal = programme(48_000);
        let a = measure(48_000, &signal, &[4096]);
        assert_eq!(a, measure(48_000, &signal, &[1, 333, 8192, 577]));
    }

    /// ffmpeg's ebur128 summary (I, LRA, true peak), or `None` when ffmpeg is not installed.
    /// The signal goes to ffmpeg as a raw f32 file: the very samples the meter saw.
    fn ffmpeg_ebur128(rate: u32, samples: &[f32], name: &str) -> Option<(f64, f64, f64)> {
        let file = format!("segue-analyze-{}-{name}.f32", std::process::id());
        let path = std::env::temp_dir().join(file);
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        std::fs::write(&path, bytes).unwrap();
        let output = std::process::Command::new("ffmpeg")
            .args(["-nostats", "-hide_banner", "-f", "f32le", "-ac", "2", "-ar"])
            .arg(rate.to_string())
            .arg("-i")
            .arg(&path)
            .args(["-filter_complex", "ebur128=peak=true", "-f", "null", "-"])
            .output();
        std::fs::remove_file(&path).unwrap();
        let log = String::from_utf8_lossy(&output.ok()?.stderr).into_owned();
        let summary = &log[log.rfind("Summary:")?..];
        let field = |key: &str| -> f64 {
            let rest = &summary[summary.find(key).unwrap() + key.len()..];
            rest.split_whitespace().next().unwrap().parse().unwrap()
        };
        Some((field("I:"), field("LRA:"), field("Peak:")))
    }

    #[test]
    fn agrees_with_ffmpeg_ebur128() {
        let cases = [
            ("sine", 48_000, sine(48_000, 1e3, 0.1, 0.0, 20 * 48_000)),
            ("programme", 48_000, programme(48_000)),
            ("programme44", 44_100, programme(44_100)),
        ];
        for (name, rate, signal) in cases {
            let ours = measure(rate, &signal, &[4096]);
            let Some((i, lra, tp)) = ffmpeg_ebur128(rate, &signal, name) else {
                println!("ffmpeg not available: skipping the comparison for {name}");
                continue;
            };
            println!(
                "{name} @ {rate} Hz: ours {ours:.2?}; ffmpeg I {i} LUFS, LRA {lra} LU, TP {tp} dBTP"
            );
            // ffmpeg prints one decimal: allow its rounding on top of the 0.1 tolerance.
            assert!((ours.integrated_lufs - i).abs() <= 0.15, "{name}: I");
            assert!((ours.true_peak_dbtp - tp).abs() <= 0.15, "{name}: TP");
            assert!((ours.loudness_range_lu - lra).abs() <= 0.55, "{name}: LRA");
        }
    }

    /// Feeds `signal` in chunks cycling through `chunks` (in samples, so frames may straddle).
    fn waveform(signal: &[f32], target: usize, chunks: &[usize]) -> Waveform {
        let mut builder = WaveformBuilder::new(48_000, target);
        let mut rest = signal;
        for &c in chunks.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (now, later) = rest.split_at(c.min(rest.len()));
            builder.push(now);
            rest = later;
        }
        builder.finish()
    }

    /// Checks the pair count and `spp * (length - 1) < frames <= spp * length`.
    fn check_bounds(w: &Waveform, frames: usize, target: usize) {
        let (spp, len) = (w.samples_per_peak as usize, w.length);
        assert!(
            len <= 2 * target && (frames < target || len >= target),
            "{len} pairs"
        );
        assert_eq!(len * 2, w.data.len());
        assert!(frames == 0 || (spp * (len - 1) < frames && frames <= spp * len));
    }

    #[test]
    fn waveform_pairs_match_a_brute_force_reference() {
        for target in [1, 3, 8] {
            for frames in (0..200).chain([1000, 4096, 4097]) {
                // A rising ramp in L and a falling one in R.
                let ramp = |i: usize| [i as f32 / 4096.0, i as f32 / -8192.0];
                let signal: Vec<f32> = (0..frames).flat_map(ramp).collect();
                let w = waveform(&signal, target, &[1, 333, 64]);
                let want: Vec<i16> = signal
                    .chunks(2 * w.samples_per_peak as usize)
                    .flat_map(|b| {
                        let lo = b.iter().copied().fold(f32::INFINITY, f32::min);
                        let hi = b.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        [to_i16(lo), to_i16(hi)]
                    })
                    .collect();
                assert_eq!(w.data, want, "target {target}, {frames} frames");
                check_bounds(&w, frames, target);
            }
        }
    }

    #[test]
    fn ten_minutes_stay_within_target_bounds() {
        let (rate, target, frames) = (48_000u32, 2000, 10 * 60 * 48_000);
        let mut builder = WaveformBuilder::new(rate, target);
        let mut chunk = Vec::with_capacity(2 * 4096);
        let (mut lo, mut hi) = (0.0f32, 0.0f32);
        for i in 0..frames {
            // A 220 Hz tone whose level swells from silence to 0.9 over the ten minutes.
            let t = i as f64 / f64::from(rate);
            let v = (0.9 * t / 600.0 * (TAU * 220.0 * t).sin()) as f32;
            (lo, hi) = (lo.min(v).min(-v), hi.max(v).max(-v));
            chunk.extend_from_slice(&[v, -v]);
            if chunk.len() == 2 * 4096 || i + 1 == frames {
                builder.push(&chunk);
                chunk.clear();
            }
        }
        let w = builder.finish();
        check_bounds(&w, frames, target);
        assert!(w.length >= target);
        assert_eq!(w.data.iter().min(), Some(&to_i16(lo)));
        assert_eq!(w.data.iter().max(), Some(&to_i16(hi)));
        // The swell: the first pair is near silence, the last near full scale.
        assert!(w.data[1] < 300 && w.data[2 * w.length - 1] > 29_000);
    }

    #[test]
    fn waveform_json_is_audiowaveform_shaped() {
        let w = waveform(&[0.5, -1.0, 1.0, 0.25, -0.25, 0.0], 1, &[6]);
        let json = serde_json::to_value(&w).unwrap();
        let want = serde_json::json!({
            "version": 2, "channels": 1, "sample_rate": 48000, "samples_per_pixel": 2,
            "bits": 16, "length": 2, "data": [-32768, 32767, -8192, 0]
        });
        assert_eq!(json, want);
        assert_eq!(serde_json::from_value::<Waveform>(json).unwrap(), w);
    }
}
