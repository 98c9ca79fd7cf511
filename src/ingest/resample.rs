//! Sample-rate conversion for ingest. AAC is encoded at 44.1 or 48 kHz only, so every other source
//! rate is converted ([`output_rate`] picks the target) with rubato's band-limited sinc resampler:
//! a Blackman-Harris² windowed sinc of 256 taps (128 per unit of decimation beyond 2x, so 512 for
//! 192 kHz) whose cutoff rubato derives from the filter length (about 0.95 of the lower Nyquist),
//! computed in f32 with SIMD: flat within 0.01 dB to 20 kHz, aliases below -130 dB past the
//! transition band. For the usual rates the ratio is a fraction `b / a` with a small denominator,
//! so the filter is precomputed for exactly the `b` phases that occur and used without
//! interpolation (a true synchronous resampler); odd ratios fall back to 256 phases with cubic
//! interpolation between them. The filter delays its output by about half its length: a few zero
//! frames are fed first so that the delay becomes a whole number of output frames, that many frames
//! are dropped from the start, and [`Resampler::finish`] pads with silence until exactly
//! `ceil(n_in * to / from)` frames came out, so output frame `k` is the input at time `k / to`
//! (aligned at lag 0). Input is staged in fixed chunks, so the output does not depend on how the
//! input was split, and memory does not grow with the track.

use rubato::audioadapter_buffers::SizeError;
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, FixedAsync, Indexing, Resampler as _, SincInterpolationParameters,
    SincInterpolationType, WindowFunction,
};

/// Input frames handed to rubato per call.
const CHUNK_FRAMES: usize = 4096;
/// Shortest sinc filter, in input frames; downsampling by `d` uses `128 * ceil(d)` if longer,
/// so that the transition band stays as narrow relative to the output rate.
const MIN_SINC_LEN: u32 = 256;
/// Most filter taps precomputed over all phases (4 MiB of f32) for an exact ratio.
const MAX_EXACT_TAPS: u64 = 1 << 20;
/// Largest conversion ratio accepted, either way.
const MAX_RATIO: u32 = 16;
/// Filter phases used, with cubic interpolation, when an exact ratio needs too many taps.
const FALLBACK_PHASES: usize = 256;

/// The output rate segue encodes at for a given source rate: 44_100 or 48_000 are kept; multiples of 11_025 (22_050, 88_200, 176_400, ...) map to 44_100; everything else maps to 48_000.
pub fn output_rate(source_rate: u32) -> u32 {
    if source_rate != 0 && source_rate % 11_025 == 0 {
        44_100
    } else {
        48_000
    }
}

/// Errors from building or running a [`Resampler`]; rates are (from, to) in Hz.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    /// A rate is zero, or the rates are more than 16x apart.
    #[error("cannot resample {0} Hz -> {1} Hz: rates must be non-zero and within 16x")]
    InvalidRate(u32, u32),
    /// rubato refused the configuration.
    #[error("cannot build a {0} Hz -> {1} Hz resampler: {2}")]
    Construction(u32, u32, #[source] rubato::ResamplerConstructionError),
    /// The input slice does not hold whole stereo frames.
    #[error("interleaved stereo input must hold an even number of samples, got {0}")]
    OddLength(usize),
    /// rubato failed while processing a chunk.
    #[error("resampling {0} Hz -> {1} Hz failed: {2}")]
    Process(u32, u32, #[source] rubato::ResampleError),
    /// An internal buffer did not match the size rubato asked for.
    #[error("resampler buffer has the wrong size: {0}")]
    Buffer(#[from] SizeError),
    /// [`Resampler::process`] was called after [`Resampler::finish`].
    #[error("resampler input fed after finish")]
    Finished,
}

/// A streaming stereo sample-rate converter (see the module doc).
pub struct Resampler {
    from: u32,
    to: u32,
    /// Sinc resampler with a fixed input chunk of [`CHUNK_FRAMES`].
    inner: Async<f32>,
    /// Staged interleaved input, always `CHUNK_FRAMES` frames long, and its filled frames.
    staged: Vec<f32>,
    staged_frames: usize,
    /// Interleaved output of one rubato call.
    scratch: Vec<f32>,
    /// Output frames still to drop: the filter delay.
    skip: u64,
    frames_in: u64,
    frames_out: u64,
    finished: bool,
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Picks the zero frames to feed first and the output frames to drop so that output frame `k`
/// lands on input time `k * a / b` (`a / b` = from / to in lowest terms).
///
/// rubato evaluates output frame `j` (from 0) at input time `(j + 1) * a / b - L / 2 + 1 / f`
/// (`L` taps, `f` phases), counted from the first frame it was fed; with `pad` zero frames in
/// front, dropping `delay` frames aligns the output when `(delay + 1) * a / b = L / 2 + pad - 1 / f`.
fn alignment(a: u64, b: u64, taps: u64, phases: u64) -> (usize, u64) {
    let half = taps / 2;
    let mut best = (0usize, 0u64, f64::INFINITY);
    for pad in 0..CHUNK_FRAMES {
        let lead = half + pad as u64;
        if phases == b {
            // Exact phases: the condition is `(delay + 1) * a = lead * b - 1` in integers.
            let num = lead * b - 1;
            if num % a == 0 && num / a >= 1 {
                return (pad, num / a - 1);
            }
        }
        // Otherwise (or until an exact solution turns up) the pad that comes closest.
        let delay = (lead as f64 - 1.0 / phases as f64) * b as f64 / a as f64 - 1.0;
        let err = (delay - delay.round()).abs();
        if delay >= 0.0 && err < best.2 {
            best = (pad, delay.round() as u64, err);
        }
    }
    (best.0, best.1)
}

impl Resampler {
    /// A stereo resampler from `from` Hz to `to` Hz (high quality: sinc, band-limited, e.g. rubato's sinc or FFT-based synchronous resampler with long filters).
    ///
    /// Equal rates are accepted too (the audio is then only low-passed at 0.95 x Nyquist);
    /// callers normally skip the resampler in that case.
    pub fn new(from: u32, to: u32) -> Result<Self, ResampleError> {
        if from == 0 || to == 0 || from / to > MAX_RATIO || to / from > MAX_RATIO {
            return Err(ResampleError::InvalidRate(from, to));
        }
        let g = gcd(u64::from(from), u64::from(to));
        let (a, b) = (u64::from(from) / g, u64::from(to) / g);
        let taps = (128 * from.div_ceil(to)).max(MIN_SINC_LEN);
        let (phases, interpolation) = match usize::try_from(b) {
            Ok(b) if b as u64 * u64::from(taps) <= MAX_EXACT_TAPS => {
                (b, SincInterpolationType::Nearest)
            }
            _ => (FALLBACK_PHASES, SincInterpolationType::Cubic),
        };
        let params =
            SincInterpolationParameters::new(taps as usize, WindowFunction::BlackmanHarris2)
                .oversampling_factor(phases)
                .interpolation(interpolation);
        let ratio = f64::from(to) / f64::from(from);
        let inner = Async::new_sinc(ratio, 1.0, &params, CHUNK_FRAMES, 2, FixedAsync::Input)
            .map_err(|e| ResampleError::Construction(from, to, e))?;
        let (pad, skip) = alignment(a, b, u64::from(taps), phases as u64);
        Ok(Self {
            from,
            to,
            scratch: vec![0.0; inner.output_frames_max() * 2],
            inner,
            staged: vec![0.0; CHUNK_FRAMES * 2],
            staged_frames: pad,
            skip,
            frames_in: 0,
            frames_out: 0,
            finished: false,
        })
    }

    /// Feeds interleaved stereo input; appends whatever output is ready to `out` (interleaved stereo).
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), ResampleError> {
        if self.finished {
            return Err(ResampleError::Finished);
        }
        if input.len() % 2 != 0 {
            return Err(ResampleError::OddLength(input.len()));
        }
        self.frames_in += (input.len() / 2) as u64;
        let mut rest = input;
        while !rest.is_empty() {
            let start = self.staged_frames * 2;
            let take = rest.len().min(self.staged.len() - start);
            self.staged[start..start + take].copy_from_slice(&rest[..take]);
            self.staged_frames += take / 2;
            rest = &rest[take..];
            if self.staged_frames == CHUNK_FRAMES {
                self.run_chunk(None, u64::MAX, out)?;
            }
        }
        Ok(())
    }

    /// Flushes the tail; after this the total frames appended over all calls is exactly ceil(total_in_frames * to / from), and the output is time-aligned with the input (the resampler's own delay removed from the start).
    ///
    /// A second call appends nothing.
    pub fn finish(&mut self, out: &mut Vec<f32>) -> Result<(), ResampleError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let target =
            (u128::from(self.frames_in) * u128::from(self.to)).div_ceil(u128::from(self.from));
        // Only reachable past 2^64 output frames, millions of years of audio.
        let target = u64::try_from(target).unwrap_or(u64::MAX);
        // The staged frames first, then pure silence until the tail is out.
        let mut partial = Some(self.staged_frames);
        while self.frames_out < target {
            self.run_chunk(Some(partial.take().unwrap_or(0)), target, out)?;
        }
        Ok(())
    }

    /// Runs one rubato call on the staged chunk (`partial`: only that many frames are input)
    /// and appends its output past the delay, up to `limit` frames in total.
    fn run_chunk(
        &mut self,
        partial: Option<usize>,
        limit: u64,
        out: &mut Vec<f32>,
    ) -> Result<(), ResampleError> {
        let input = InterleavedSlice::new(&self.staged[..], 2, CHUNK_FRAMES)?;
        let out_frames = self.scratch.len() / 2;
        let mut output = InterleavedSlice::new_mut(&mut self.scratch[..], 2, out_frames)?;
        let indexing = partial.map(|n| Indexing::new().partial_len(n));
        let (_, produced) = self
            .inner
            .process_into_buffer(&input, &mut output, indexing.as_ref())
            .map_err(|e| ResampleError::Process(self.from, self.to, e))?;
        self.staged_frames = 0;
        let produced = produced as u64;
        let dropped = self.skip.min(produced);
        self.skip -= dropped;
        let keep = (produced - dropped).min(limit.saturating_sub(self.frames_out));
        // dropped + keep <= produced <= out_frames, which is a usize.
        let (first, last) = (dropped as usize, (dropped + keep) as usize);
        out.extend_from_slice(&self.scratch[first * 2..last * 2]);
        self.frames_out += keep;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::TAU;

    /// Interleaved stereo sine, both channels equal.
    fn sine(rate: u32, freq: f64, frames: usize, amp: f64) -> Vec<f32> {
        (0..frames)
            .flat_map(|i| {
                let v = (amp * (TAU * freq * i as f64 / f64::from(rate)).sin()) as f32;
                [v, v]
            })
            .collect()
    }

    /// Resamples `input`, cutting it into chunks whose frame counts cycle through `chunks`.
    fn run(from: u32, to: u32, input: &[f32], chunks: &[usize]) -> Vec<f32> {
        let mut rs = Resampler::new(from, to).unwrap();
        let mut out = Vec::new();
        let mut pos = 0;
        for &c in chunks.iter().cycle() {
            if pos >= input.len() {
                break;
            }
            let end = (pos + c * 2).min(input.len());
            rs.process(&input[pos..end], &mut out).unwrap();
            pos = end;
        }
        rs.finish(&mut out).unwrap();
        out
    }

    /// The four conversions the brief singles out.
    const PAIRS: [(u32, u32); 4] = [
        (96_000, 48_000),
        (44_100, 48_000),
        (88_200, 44_100),
        (192_000, 48_000),
    ];

    #[test]
    fn output_rate_maps_to_aac_rates() {
        for src in [44_100, 11_025, 22_050, 88_200, 176_400, 352_800] {
            assert_eq!(output_rate(src), 44_100, "source {src}");
        }
        for src in [48_000, 0, 8_000, 16_000, 32_000, 96_000, 192_000, 44_056] {
            assert_eq!(output_rate(src), 48_000, "source {src}");
        }
    }

    #[test]
    fn exact_output_length_whatever_the_chunking() {
        for (from, to) in PAIRS {
            for frames in [0usize, 1, 7, 1000, 4096, 48_001, 100_003] {
                let input = sine(from, 440.0, frames, 0.5);
                for chunk in [1usize, 333, 4096] {
                    let out = run(from, to, &input, &[chunk]);
                    let want = (frames as u64 * u64::from(to)).div_ceil(u64::from(from));
                    assert_eq!(
                        out.len() as u64,
                        want * 2,
                        "{from}->{to}, {frames} frames, chunk {chunk}"
                    );
                }
            }
        }
    }

    #[test]
    fn sine_stays_aligned_at_lag_zero() {
        let more = [
            (48_000, 44_100),
            (22_050, 44_100),
            (44_056, 48_000),
            (48_000, 48_000),
            (262_336, 48_000), // 4099 / 750: no exact pad, the closest one is used
        ];
        for (from, to) in PAIRS.into_iter().chain(more) {
            let input = sine(from, 1000.0, from as usize / 2, 0.5);
            let out = run(from, to, &input, &[333]);
            let ideal = sine(to, 1000.0, out.len() / 2, 0.5);
            // Skip the onset and the end, where the sine starts and stops abruptly.
            let (lo, hi) = (500, out.len() / 2 - 500);
            let corr = |lag: isize| {
                let (mut xy, mut xx, mut yy) = (0.0f64, 0.0f64, 0.0f64);
                for k in lo..hi {
                    let x = f64::from(out[2 * k]);
                    let y = f64::from(ideal[2 * (k as isize + lag) as usize]);
                    (xy, xx, yy) = (xy + x * y, xx + x * x, yy + y * y);
                }
                xy / (xx * yy).sqrt()
            };
            let best = (-10..=10)
                .max_by(|&a, &b| corr(a).total_cmp(&corr(b)))
                .unwrap();
            assert_eq!(best, 0, "{from}->{to}: correlation peaks at lag {best}");
            assert!(corr(0) > 0.99, "{from}->{to}: correlation {}", corr(0));
            let err = (2 * lo..2 * hi)
                .map(|i| (out[i] - ideal[i]).abs())
                .fold(0.0, f32::max);
            assert!(err < 1e-4, "{from}->{to}: off the ideal sine by {err}");
        }
    }

    #[test]
    fn chunking_does_not_change_the_output() {
        for (from, to) in PAIRS {
            let input: Vec<f32> = sine(from, 997.0, 50_000, 0.4)
                .iter()
                .zip(sine(from, 5_123.0, 50_000, 0.3))
                .map(|(a, b)| a + b)
                .collect();
            let a = run(from, to, &input, &[4096]);
            let b = run(from, to, &input, &[1, 333, 8192, 577]);
            assert_eq!(a, b, "{from}->{to}");
        }
    }

    #[test]
    fn aliasing_tone_is_suppressed() {
        let input = sine(96_000, 30_000.0, 96_000, 0.5);
        let out = run(96_000, 48_000, &input, &[4096]);
        let rms = |v: &[f32]| {
            (v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
        };
        let n = out.len();
        let db = 20.0 * (rms(&out[2000..n - 2000]) / rms(&input)).log10();
        assert!(db < -60.0, "30 kHz tone only attenuated {db:.1} dB");
    }

    #[test]
    fn errors_are_reported() {
        let zero = Resampler::new(0, 48_000);
        assert!(matches!(zero, Err(ResampleError::InvalidRate(0, 48_000))));
        let far = Resampler::new(48_000, 2_000);
        assert!(matches!(
            far,
            Err(ResampleError::InvalidRate(48_000, 2_000))
        ));
        let mut rs = Resampler::new(96_000, 48_000).unwrap();
        let mut out = Vec::new();
        let odd = rs.process(&[0.0; 3], &mut out);
        assert!(matches!(odd, Err(ResampleError::OddLength(3))));
        rs.finish(&mut out).unwrap();
        let late = rs.process(&[0.0; 2], &mut out);
        assert!(matches!(late, Err(ResampleError::Finished)));
    }

    /// Prints, without asserting, how many times faster than real time 96k -> 48k runs.
    #[test]
    fn speed_96k_to_48k() {
        let (seconds, block) = (60, sine(96_000, 1000.0, 96_000, 0.5));
        let mut rs = Resampler::new(96_000, 48_000).unwrap();
        let mut out = Vec::with_capacity(48_000 * 2 * 2);
        let start = std::time::Instant::now();
        for chunk in (0..seconds).flat_map(|_| block.chunks(4096 * 2)) {
            rs.process(chunk, &mut out).unwrap();
            out.clear();
        }
        rs.finish(&mut out).unwrap();
        let elapsed = start.elapsed().as_secs_f64();
        let build = ["release", "debug"][usize::from(cfg!(debug_assertions))];
        let speed = f64::from(seconds) / elapsed;
        println!("resample 96k->48k stereo, {build} build: {speed:.0}x realtime ({elapsed:.3} s)");
    }
}
