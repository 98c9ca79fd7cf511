//! Time as integers: sample counts with an explicit timescale.
//!
//! Every rescaling of time in segue happens here and only here. Media time is a count of
//! ticks of a [`Timescale`] (for audio, the timescale is the sample rate, so one tick is one
//! sample). Floats appear only at the edges: seconds in JSON and `EXTINF` text.

use serde::{Deserialize, Serialize};

/// Ticks per second of a media timeline (for audio tracks: the sample rate in Hz).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timescale(pub u32);

/// A point or span on a media timeline, counted in ticks of some [`Timescale`].
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Ticks(pub u64);

impl Timescale {
    /// Converts a duration in seconds to ticks, rounding to the nearest tick.
    pub fn ticks_from_seconds(self, seconds: f64) -> Ticks {
        Ticks((seconds * f64::from(self.0)).round().max(0.0) as u64)
    }

    /// Seconds (as a float, for display and JSON only) of a tick count.
    pub fn seconds(self, ticks: Ticks) -> f64 {
        ticks.0 as f64 / f64::from(self.0)
    }

    /// Rescales `ticks` from this timescale to `to`, rounding down (exact when `to` divides evenly).
    pub fn rescale(self, ticks: Ticks, to: Timescale) -> Ticks {
        Ticks((u128::from(ticks.0) * u128::from(to.0) / u128::from(self.0)) as u64)
    }

    /// Rescales `ticks` from this timescale to `to`, rounding up.
    pub fn rescale_ceil(self, ticks: Ticks, to: Timescale) -> Ticks {
        let num = u128::from(ticks.0) * u128::from(to.0);
        Ticks(num.div_ceil(u128::from(self.0)) as u64)
    }
}

impl Ticks {
    /// Rounds up to the next multiple of `step` ticks (`step` > 0).
    pub fn align_up(self, step: u64) -> Ticks {
        Ticks(self.0.div_ceil(step) * step)
    }

    /// Rounds down to a multiple of `step` ticks, never below `step` (`step` > 0).
    pub fn align_down(self, step: u64) -> Ticks {
        Ticks((self.0 / step * step).max(step))
    }
}

/// Formats a duration for an HLS `EXTINF` tag: decimal seconds with enough digits that the
/// tick count can be recovered exactly (RFC 8216 4.3.2.1 allows decimal-floating-point).
pub fn extinf_seconds(ticks: Ticks, timescale: Timescale) -> f64 {
    // Six decimals resolve a single sample at rates up to 500 kHz.
    (timescale.seconds(ticks) * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescale_between_rates_is_exact_when_divisible() {
        assert_eq!(
            Timescale(48_000).rescale(Ticks(96_000), Timescale(1000)),
            Ticks(2000)
        );
        assert_eq!(
            Timescale(44_100).rescale_ceil(Ticks(1), Timescale(48_000)),
            Ticks(2)
        );
    }

    #[test]
    fn alignment_rounds_to_frame_multiples() {
        assert_eq!(Ticks(1).align_up(1024), Ticks(1024));
        assert_eq!(Ticks(2048).align_up(1024), Ticks(2048));
        assert_eq!(Ticks(2047).align_down(1024), Ticks(1024));
        assert_eq!(Ticks(100).align_down(1024), Ticks(1024));
    }
}
