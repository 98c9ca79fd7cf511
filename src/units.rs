//! Time as integers: sample counts with an explicit timescale.
//!
//! Every rescaling of time in segue happens here and only here. Media time is a count of
//! ticks of a [`Timescale`] (for audio, the timescale is the sample rate, so one tick is one
//! sample). Floats appear only at the edges: seconds in JSON and `EXTINF` text.

/// Ticks per second of a media timeline (for audio tracks: the sample rate in Hz).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timescale(pub u32);

/// A point or span on a media timeline, counted in ticks of some [`Timescale`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
}

impl Ticks {
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
    fn seconds_convert_to_the_nearest_tick() {
        let rate = Timescale(48_000);
        assert_eq!(rate.ticks_from_seconds(0.5), Ticks(24_000));
        assert_eq!(rate.ticks_from_seconds(-1.0), Ticks(0));
        assert_eq!(rate.seconds(Ticks(12_000)), 0.25);
        assert_eq!(extinf_seconds(Ticks(1), Timescale(44_100)), 0.000023);
    }

    #[test]
    fn alignment_rounds_down_to_frame_multiples() {
        assert_eq!(Ticks(2048).align_down(1024), Ticks(2048));
        assert_eq!(Ticks(2047).align_down(1024), Ticks(1024));
        assert_eq!(Ticks(100).align_down(1024), Ticks(1024));
    }
}
