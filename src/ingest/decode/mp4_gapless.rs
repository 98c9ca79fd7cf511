//! MP4 gapless trim. AAC encoders prepend priming frames (ffmpeg 1024, Apple 2112) and pad the
//! end; symphonia's MP4 reader applies neither, so the trim comes from the iTunes `iTunSMPB` tag
//! (Apple's encoders) or else from the track's edit list (ISO/IEC 14496-12 8.6.6; ffmpeg writes
//! one). symphonia parses `elst` but does not expose it, so `moov` is read again here: only that
//! box, never the media data. Within it only the path to the four boxes needed is walked and
//! only those are decoded (mp4-atom's typed boxes): decoding all of `moov` would fail on any box
//! mp4-atom cannot parse and log a warning for every box it does not know (`trkn`, `chan`, ...).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use mp4_atom::{Atom, Decode, Edts, Elst, FourCC, Header, Mdhd, Mdia, Moov, Mvhd, ReadFrom};
use mp4_atom::{Tkhd, Trak};
use symphonia::core::formats::Track;

/// Largest `moov` read, in bytes. It holds sample tables and metadata only (a few MB for hours
/// of audio); the cap bounds the work a hostile size field can cause.
const MAX_MOOV_BYTES: usize = 64 << 20;

/// The frames of the decoded stream that are the original audio, at the track's sample rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct GaplessTrim {
    /// Leading frames (encoder delay) to drop.
    pub skip: u64,
    /// Frames to keep after the skipped ones.
    pub keep: u64,
}

/// Parses an `iTunSMPB` value: " 00000000 <delay> <padding> <frames> ...", hexadecimal.
pub(super) fn parse_itunsmpb(value: &str) -> Option<GaplessTrim> {
    let hex = |x: &str| u64::from_str_radix(x, 16).ok();
    let fields: Vec<u64> = value.split_whitespace().filter_map(hex).collect();
    match fields[..] {
        [_, skip, _, keep, ..] if keep > 0 => Some(GaplessTrim { skip, keep }),
        _ => None,
    }
}

/// The trim given by the edit list of `track` (whose sample rate is `rate` Hz): its one
/// non-empty edit starts `media_time` into the media and lasts `segment_duration`. Anything
/// else (no `moov`, no edit list, several edits) gives `None`.
pub(super) fn edit_list_trim(path: &Path, track: &Track, rate: u32) -> Option<GaplessTrim> {
    let moov = read_moov(path)?;
    let trak = children(&moov, Trak::KIND)
        .find(|trak| first::<Tkhd>(trak).is_some_and(|tkhd| tkhd.track_id == track.id))?;
    let mdhd: Mdhd = first(children(trak, Mdia::KIND).next()?)?;
    let elst: Elst = first(children(trak, Edts::KIND).next()?)?;
    // An empty edit (no media time) only delays the presentation: it trims nothing.
    let mut edits = elst
        .entries
        .iter()
        .filter_map(|e| Some((e.segment_duration, e.media_time?)));
    let (duration, time) = edits.next().filter(|_| edits.next().is_none())?;
    let movie_scale = u64::from(first::<Mvhd>(&moov)?.timescale.max(1));
    let media_scale = u64::from(mdhd.timescale.max(1));
    let to_frames =
        |x: u64, scale: u64| (u128::from(x) * u128::from(rate) / u128::from(scale)) as u64;
    let (skip, keep) = (
        to_frames(time, media_scale),
        to_frames(duration, movie_scale),
    );
    // A coarse movie timescale (ffmpeg writes 1000) rounds the edit; the sample table is exact.
    let tolerance = u64::from(rate) / movie_scale + 1;
    let exact = track
        .num_frames
        .and_then(|n| n.checked_sub(skip))
        .filter(|n| n.abs_diff(keep) <= tolerance);
    Some(GaplessTrim {
        skip,
        keep: exact.unwrap_or(keep),
    })
}

/// The body of the top-level `moov` box of the file at `path`, seeking over the boxes before it
/// (`mdat` often comes first) instead of reading them.
fn read_moov(path: &Path) -> Option<Vec<u8>> {
    let mut file = BufReader::new(File::open(path).ok()?);
    loop {
        let header = Header::read_from(&mut file).ok()?;
        // No size: the box runs to the end of the file, and nothing follows it.
        let size = header.size?;
        if header.kind == Moov::KIND {
            if size > MAX_MOOV_BYTES {
                return None;
            }
            let mut body = Vec::new();
            file.take(u64::try_from(size).ok()?)
                .read_to_end(&mut body)
                .ok()?;
            return (body.len() == size).then_some(body);
        }
        file.seek_relative(i64::try_from(size).ok()?).ok()?;
    }
}

/// The bodies of the boxes of type `kind` directly inside the box body `parent`.
fn children(mut parent: &[u8], kind: FourCC) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        // Decoding the header advances `parent` past it.
        let header = Header::decode(&mut parent).ok()?;
        let (body, rest) = parent.split_at_checked(header.size.unwrap_or(parent.len()))?;
        parent = rest;
        Some((header.kind, body))
    })
    .filter_map(move |(found, body)| (found == kind).then_some(body))
}

/// The first box of type `T` directly inside the box body `parent`, decoded.
fn first<T: Atom>(parent: &[u8]) -> Option<T> {
    T::decode_body(&mut children(parent, T::KIND).next()?).ok()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{CHIRP, ffmpeg};
    use super::*;

    #[test]
    fn itunsmpb_gives_delay_and_length() {
        let smpb = " 00000000 00000840 000001CA 0000000000046E00 00000000 00000000";
        let trim = GaplessTrim {
            skip: 0x840,
            keep: 0x46E00,
        };
        assert_eq!(parse_itunsmpb(smpb), Some(trim));
        assert_eq!(parse_itunsmpb(" 00000000 00000840 000001CA"), None);
        assert_eq!(parse_itunsmpb(" 0 840 1CA 0 0"), None, "zero length");
    }

    #[test]
    fn edit_list_gives_priming_and_length_wherever_moov_is() {
        let dir = tempfile::tempdir().unwrap();
        let trim = GaplessTrim {
            skip: 1024,
            keep: 57330,
        };
        let aac = format!("{CHIRP} -c:a aac");
        for (name, extra) in [
            ("end.m4a", &[][..]),
            ("start.m4a", &["-movflags", "+faststart"]),
        ] {
            let path = ffmpeg(dir.path(), name, &aac, extra);
            assert_eq!(
                edit_list_trim(&path, &Track::new(1), 44100),
                Some(trim),
                "{name}"
            );
        }
        let wav = ffmpeg(dir.path(), "a.wav", CHIRP, &[]);
        assert_eq!(edit_list_trim(&wav, &Track::new(1), 44100), None);
    }
}
