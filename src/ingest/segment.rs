//! Access units -> segments with exact sample counts (pure, no I/O).
//!
//! Segment alignment: every rendition of a ladder runs on one decode timeline that starts at 0
//! with the same priming (see `pipeline`), and every boundary sits on a multiple of
//! [`ALIGNMENT_UNIT`] samples: the HE-AAC frame (2048) and a whole number of AAC-LC frames
//! (1024). So a boundary is a frame boundary in every rendition and the segments of all
//! renditions cover the same presentation times; a player can switch at any one of them.
//! The first segment is short so playback can start after one small fetch; the rest have the
//! nominal duration; the last ends where the padded stream ends and is never empty.

use crate::units::{Ticks, Timescale};

/// Every segment boundary is a multiple of this many samples (lcm of the AAC frame lengths).
pub const ALIGNMENT_UNIT: u64 = 2048;

/// Where segment boundaries fall on the decode timeline (in samples at the output rate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentPlan {
    /// End of the first segment.
    first_end: u64,
    /// Duration of every later segment.
    regular: u64,
}

impl SegmentPlan {
    /// Plans segments of at most `segment_seconds` after a first one of at most `first_seconds`
    /// (priming included), all multiples of [`ALIGNMENT_UNIT`] (at least one unit each).
    pub fn new(timescale: Timescale, first_seconds: f64, segment_seconds: f64) -> Self {
        let first_end = timescale
            .ticks_from_seconds(first_seconds)
            .align_down(ALIGNMENT_UNIT)
            .0;
        let regular = timescale
            .ticks_from_seconds(segment_seconds)
            .align_down(ALIGNMENT_UNIT)
            .0;
        SegmentPlan { first_end, regular }
    }

    /// The decode time at which segment `index` (0-based) ends.
    pub fn end_of(&self, index: usize) -> u64 {
        self.first_end + self.regular * index as u64
    }

    /// The durations of the segments of a timeline `total` samples long.
    pub fn durations(&self, total: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut index = 0;
        while start < total {
            let end = self.end_of(index).min(total);
            out.push(end - start);
            start = end;
            index += 1;
        }
        out
    }

    /// Duration of a nominal (non-first, non-last) segment.
    pub fn regular(&self) -> Ticks {
        Ticks(self.regular)
    }
}

/// One finished media segment of one rendition, ready for the fMP4 writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentData {
    /// 0-based index of the segment within the track.
    pub index: usize,
    /// Decode time of the first sample, in samples at the output rate (`tfdt`).
    pub base_decode_time: u64,
    /// Duration of every access unit, in samples.
    pub sample_duration: u32,
    /// Size in bytes of each access unit.
    pub sample_sizes: Vec<u32>,
    /// The access units, back to back.
    pub data: Vec<u8>,
}

impl SegmentData {
    /// Duration of the segment in samples.
    pub fn duration(&self) -> u64 {
        self.sample_sizes.len() as u64 * u64::from(self.sample_duration)
    }
}

/// Groups one rendition's access units into the segments of a [`SegmentPlan`].
#[derive(Debug)]
pub struct Segmenter {
    plan: SegmentPlan,
    frame_length: u32,
    /// Total samples of the timeline; access units past it are dropped (encoder flush surplus).
    total: u64,
    current: SegmentData,
    decode_time: u64,
}

impl Segmenter {
    /// A segmenter for access units of `frame_length` samples on a timeline `total` samples
    /// long (a multiple of [`ALIGNMENT_UNIT`], so it ends on a frame boundary).
    pub fn new(plan: SegmentPlan, frame_length: u32, total: u64) -> Self {
        Segmenter {
            plan,
            frame_length,
            total,
            current: SegmentData {
                index: 0,
                base_decode_time: 0,
                sample_duration: frame_length,
                sample_sizes: Vec::new(),
                data: Vec::new(),
            },
            decode_time: 0,
        }
    }

    /// Decode time reached so far (samples of the access units accepted).
    pub fn decode_time(&self) -> u64 {
        self.decode_time
    }

    /// Sets the timeline's total length once the input has ended.
    pub fn set_total(&mut self, total: u64) {
        self.total = total;
    }

    /// Whether the timeline is complete (later access units would be dropped).
    pub fn is_full(&self) -> bool {
        self.decode_time >= self.total
    }

    /// Adds one access unit; returns the segment it completed, if any.
    pub fn push(&mut self, access_unit: &[u8]) -> Option<SegmentData> {
        if self.is_full() {
            return None;
        }
        self.current.sample_sizes.push(access_unit.len() as u32);
        self.current.data.extend_from_slice(access_unit);
        self.decode_time += u64::from(self.frame_length);
        let end = self.plan.end_of(self.current.index).min(self.total);
        if self.decode_time >= end {
            Some(self.take_current())
        } else {
            None
        }
    }

    /// The final partial segment, if any access units are pending.
    pub fn finish(mut self) -> Option<SegmentData> {
        (!self.current.sample_sizes.is_empty()).then(|| self.take_current())
    }

    fn take_current(&mut self) -> SegmentData {
        let next = SegmentData {
            index: self.current.index + 1,
            base_decode_time: self.decode_time,
            sample_duration: self.frame_length,
            sample_sizes: Vec::new(),
            data: Vec::new(),
        };
        std::mem::replace(&mut self.current, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_are_whole_frames_of_every_profile() {
        for rate in [44_100, 48_000] {
            let plan = SegmentPlan::new(Timescale(rate), 1.0, 4.0);
            for i in 0..100 {
                assert_eq!(plan.end_of(i) % 2048, 0);
                assert_eq!(plan.end_of(i) % 1024, 0);
            }
            let first = Timescale(rate).seconds(Ticks(plan.end_of(0)));
            assert!((0.9..=1.0).contains(&first), "first segment {first} s");
        }
    }

    #[test]
    fn durations_cover_the_timeline_without_empty_segments() {
        let plan = SegmentPlan::new(Timescale(48_000), 1.0, 4.0);
        for total in [
            2048u64,
            47_104,
            49_152,
            300 * 48_000 / 2048 * 2048,
            192_512 + 49_152,
        ] {
            let d = plan.durations(total);
            assert_eq!(d.iter().sum::<u64>(), total);
            assert!(d.iter().all(|&x| x > 0 && x % 2048 == 0));
            assert!(d.iter().all(|&x| x <= plan.regular().0.max(plan.end_of(0))));
        }
    }

    #[test]
    fn segmenters_of_different_frame_lengths_cut_at_the_same_times() {
        let plan = SegmentPlan::new(Timescale(48_000), 1.0, 4.0);
        let total = 20 * 2048 * 10;
        let cut = |frame: u32| {
            let mut s = Segmenter::new(plan, frame, total);
            let mut segs = Vec::new();
            for _ in 0..(total / u64::from(frame) + 5) {
                segs.extend(s.push(&[0u8; 3]));
            }
            segs.extend(s.finish());
            segs.iter()
                .map(|x| (x.base_decode_time, x.duration()))
                .collect::<Vec<_>>()
        };
        let lc = cut(1024);
        assert_eq!(lc, cut(2048));
        assert_eq!(
            lc.iter().map(|x| x.1).collect::<Vec<_>>(),
            plan.durations(total)
        );
    }
}
