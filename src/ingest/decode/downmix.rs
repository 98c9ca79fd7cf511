//! Any channel layout to stereo. Coefficients follow ITU-R BS.775 (centre and surrounds at -3 dB,
//! LFE dropped) and are scaled down so that neither side's sum of gains exceeds 1: a full-scale
//! input can then never clip, whatever the channel count.

use std::ops::Range;

use symphonia::core::audio::{ChannelLabel, Channels, Position};

/// Stereo downmix coefficients `[left, right]` for each of `n` decoded planes (ITU-R BS.775:
/// centre and surrounds at -3 dB, LFE dropped), scaled so neither side's sum exceeds 1.
pub(super) fn mix_matrix(layout: &Channels, n: usize) -> Vec<[f32; 2]> {
    use Position as P;
    const H: f32 = std::f32::consts::FRAC_1_SQRT_2;
    if n == 1 {
        return vec![[1.0, 1.0]];
    }
    let positions: Vec<Option<Position>> = match layout {
        Channels::Positioned(p) => (0..64)
            .filter(|b| (p.bits() >> b) & 1 == 1)
            .map(|b| Some(P::from_bits_retain(1 << b)))
            .collect(),
        Channels::Custom(labels) => labels
            .iter()
            .map(|l| {
                if let ChannelLabel::Positioned(p) = l {
                    Some(*p)
                } else {
                    None
                }
            })
            .collect(),
        _ => Vec::new(),
    };
    let left = P::FRONT_LEFT_CENTER | P::REAR_LEFT | P::SIDE_LEFT | P::TOP_FRONT_LEFT;
    let left =
        left | P::TOP_REAR_LEFT | P::TOP_SIDE_LEFT | P::BOTTOM_FRONT_LEFT | P::FRONT_LEFT_WIDE;
    let right = P::FRONT_RIGHT_CENTER | P::REAR_RIGHT | P::SIDE_RIGHT | P::TOP_FRONT_RIGHT;
    let right =
        right | P::TOP_REAR_RIGHT | P::TOP_SIDE_RIGHT | P::BOTTOM_FRONT_RIGHT | P::FRONT_RIGHT_WIDE;
    let by_position = |p: Position| match p {
        p if p.intersects(P::LFE1 | P::LFE2) => [0.0, 0.0],
        P::FRONT_LEFT => [1.0, 0.0],
        P::FRONT_RIGHT => [0.0, 1.0],
        p if p.intersects(left) => [H, 0.0],
        p if p.intersects(right) => [0.0, H],
        _ => [H, H],
    };
    // Unknown positions: even channels left, odd right.
    let parity = |i: usize| {
        if i % 2 == 0 { [1.0, 0.0] } else { [0.0, 1.0] }
    };
    let by_index = |i| {
        positions
            .get(i)
            .copied()
            .flatten()
            .map_or_else(|| parity(i), by_position)
    };
    let mut m: Vec<[f32; 2]> = (0..n).map(by_index).collect();
    if m.iter().all(|c| *c == [0.0, 0.0]) {
        m = (0..n).map(parity).collect();
    }
    let sums = m
        .iter()
        .fold([0.0f32; 2], |s, c| [s[0] + c[0], s[1] + c[1]]);
    let peak = sums[0].max(sums[1]);
    if peak > 1.0 {
        m.iter_mut().for_each(|c| *c = [c[0] / peak, c[1] / peak]);
    }
    m
}

/// Mixes `frames` of the decoded `planes` into interleaved stereo `out` (replacing its content),
/// with one `[left, right]` row of `matrix` per plane.
pub(super) fn mix(
    planes: &[Vec<f32>],
    matrix: &[[f32; 2]],
    frames: Range<usize>,
    out: &mut Vec<f32>,
) {
    out.clear();
    out.resize(frames.len() * 2, 0.0);
    for (plane, [l, r]) in planes.iter().zip(matrix) {
        for (o, s) in out.chunks_exact_mut(2).zip(&plane[frames.clone()]) {
            (o[0], o[1]) = (o[0] + s * l, o[1] + s * r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use symphonia::core::audio::layouts::CHANNEL_LAYOUT_5P1;

    #[test]
    fn surround_downmix_drops_lfe_and_cannot_clip() {
        let m = mix_matrix(&CHANNEL_LAYOUT_5P1, 6);
        assert_eq!(m[3], [0.0, 0.0], "LFE is dropped");
        for side in 0..2 {
            let sum: f32 = m.iter().map(|c| c[side]).sum();
            assert!((sum - 1.0).abs() < 1e-6, "side {side} sums to {sum}");
        }
        assert_eq!(m[0][1], 0.0, "front left stays left");
        assert_eq!(m[2][0], m[2][1], "centre goes to both sides");
    }

    #[test]
    fn unknown_positions_alternate_sides() {
        let quad = mix_matrix(&Channels::Discrete(4), 4);
        assert_eq!(quad, [[0.5, 0.0], [0.0, 0.5], [0.5, 0.0], [0.0, 0.5]]);
        assert_eq!(
            mix_matrix(&Channels::Discrete(1), 1),
            [[1.0, 1.0]],
            "mono to both"
        );
    }

    #[test]
    fn mix_applies_the_matrix_to_the_frame_range() {
        let planes = vec![vec![0.0, 1.0, 0.5, 9.0], vec![0.0, -1.0, 0.25, 9.0]];
        let mut out = vec![7.0; 3];
        mix(&planes, &[[1.0, 0.0], [0.5, 0.5]], 1..3, &mut out);
        assert_eq!(out, [0.5, -0.5, 0.625, 0.125]);
    }
}
