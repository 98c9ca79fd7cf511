//! Which audio track of a file is the one to ingest.
//!
//! ffmpeg takes the first audio stream a file starts. symphonia 0.6.1's Ogg reader keeps its
//! logical streams in a map ordered by serial number, and serials are random (RFC 3533 4), so
//! its "default" track of a file with two audio streams (a Vorbis and an Opus stream, two
//! language versions) is a coin toss, and may be one this build cannot decode. Upstream-ready
//! report (symphonia-format-ogg 0.6.1): multiplex two Vorbis streams whose first-starting one
//! has the larger serial; `default_track` returns the other. For Ogg, the order the streams
//! start in is read here from the beginning-of-stream pages (all at the head of the file,
//! RFC 3533 4), and the first decodable audio stream in that order is chosen; other containers
//! keep symphonia's choice, then the first audio track this build decodes.

use symphonia::core::formats::well_known as fmts;
use symphonia::core::formats::{FormatReader, Track, TrackType};

use super::symphonia_glue::{self, audio_params};

/// The audio track to decode: for Ogg the first-starting decodable one, else symphonia's
/// default if it is decodable, else the first decodable audio track, else the default.
/// `ogg_order` is [`bos_serials`] of the file's head.
pub(super) fn choose_audio_track(reader: &dyn FormatReader, ogg_order: &[u32]) -> Option<Track> {
    let decodable = |track: &&Track| {
        audio_params(track).is_some_and(|p| {
            symphonia_glue::codecs()
                .get_audio_decoder(p.codec)
                .is_some()
        })
    };
    let tracks = reader.tracks();
    if reader.format_info().format == fmts::FORMAT_ID_OGG {
        let first = ogg_order
            .iter()
            .filter_map(|serial| tracks.iter().find(|t| t.id == *serial))
            .find(decodable);
        if let Some(track) = first {
            return Some(track.clone());
        }
    }
    let default = reader.default_track(TrackType::Audio);
    default
        .filter(decodable)
        .or_else(|| tracks.iter().find(decodable))
        .or(default)
        .cloned()
}

/// The serials of the beginning-of-stream pages at the head of `data` (RFC 3533 6: a 27-byte
/// header, `page_segments` lacing values, then the body), up to the first other page.
pub(super) fn bos_serials(mut data: &[u8]) -> Vec<u32> {
    let mut serials = Vec::new();
    while let Some(header) = data.get(..27).filter(|h| h.starts_with(b"OggS")) {
        let beginning_of_stream = header[5] & 0x02 != 0;
        if !beginning_of_stream {
            break;
        }
        serials.push(u32::from_le_bytes([
            header[14], header[15], header[16], header[17],
        ]));
        let segments = usize::from(header[26]);
        let Some(lacing) = data.get(27..27 + segments) else {
            break;
        };
        let body: usize = lacing.iter().map(|&n| usize::from(n)).sum();
        data = data.get(27 + segments + body..).unwrap_or_default();
    }
    serials
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::tests::{decode, ffmpeg, ffmpeg_frames};
    use super::*;

    /// The Ogg CRC (RFC 3533 6: polynomial 0x04c11db7, not reflected, initial value 0).
    pub(in crate::ingest::decode) fn ogg_crc(page: &[u8]) -> u32 {
        page.iter().fold(0u32, |mut crc, &byte| {
            crc ^= u32::from(byte) << 24;
            for _ in 0..8 {
                crc = if crc & 0x8000_0000 != 0 {
                    (crc << 1) ^ 0x04c1_1db7
                } else {
                    crc << 1
                };
            }
            crc
        })
    }

    /// `ogg` with the serial `from` replaced by `to` in every page, CRCs recomputed.
    fn reserial(ogg: &[u8], from: u32, to: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = ogg;
        while rest.len() >= 27 {
            let segments = usize::from(rest[26]);
            let body: usize = rest[27..27 + segments]
                .iter()
                .map(|&n| usize::from(n))
                .sum();
            let mut page = rest[..27 + segments + body].to_vec();
            rest = &rest[page.len()..];
            if page[14..18] == from.to_le_bytes() {
                page[14..18].copy_from_slice(&to.to_le_bytes());
                page[22..26].fill(0);
                let crc = ogg_crc(&page);
                page[22..26].copy_from_slice(&crc.to_le_bytes());
            }
            out.extend(page);
        }
        out
    }

    #[test]
    fn the_first_audio_stream_to_start_is_decoded_whatever_its_serial() {
        let dir = tempfile::tempdir().unwrap();
        let args = "-f lavfi -i sine=f=440:r=44100:d=1 -f lavfi -i sine=f=660:r=44100:d=0.5 \
                    -map 0 -map 1 -c:a libvorbis -fflags +bitexact -serial_offset 10";
        let muxed = ffmpeg(dir.path(), "two.ogg", args, &[]);
        let bytes = std::fs::read(&muxed).unwrap();
        assert_eq!(bos_serials(&bytes), [10, 11]);
        // The first stream gets the larger serial: symphonia would pick the second.
        let swapped = dir.path().join("swapped.ogg");
        std::fs::write(&swapped, reserial(&bytes, 10, 0xFFFF_0001)).unwrap();
        // Both decode the first stream (1 s; the other lasts 0.5 s), as ffmpeg does. The count
        // is within a Vorbis short block of the source: ffmpeg 5.1 gives 128 samples fewer than
        // the granule positions state on these short files, segue what they state.
        assert_eq!(ffmpeg_frames(&swapped), ffmpeg_frames(&muxed));
        let want = decode(&muxed).1.len() / 2;
        assert!(want.abs_diff(44_100) <= 128, "{want}");
        assert_eq!(decode(&swapped).1.len() / 2, want);
    }

    #[test]
    fn chained_ogg_sections_join_the_track() {
        let dir = tempfile::tempdir().unwrap();
        let part = |name, rate: u32, secs: f64| {
            let args = format!("-f lavfi -i sine=f=440:r={rate}:d={secs} -c:a libvorbis");
            std::fs::read(ffmpeg(dir.path(), name, &args, &[])).unwrap()
        };
        let (a, b, c) = (
            part("a.ogg", 44_100, 1.0),
            part("b.ogg", 44_100, 0.5),
            part("c.ogg", 48_000, 0.5),
        );
        let chained = dir.path().join("ab.ogg");
        std::fs::write(&chained, [&a[..], &b].concat()).unwrap();
        // Each section keeps its own gapless trim: the sum of the parts (ffmpeg counts 128
        // samples more here, 1.0 s + 0.5 s: it does not trim the second section's start).
        assert_eq!(decode(&chained).1.len() / 2, 44_100 + 22_050);
        let other_rate = dir.path().join("ac.ogg");
        std::fs::write(&other_rate, [&a[..], &c].concat()).unwrap();
        let err = super::super::tests::decode_with(&other_rate, &Default::default()).unwrap_err();
        assert!(
            matches!(&err, super::super::DecodeError::Malformed(m) if m.contains("44100 to 48000 Hz")),
            "{err}"
        );
    }

    /// An Ogg page header of `serial` with `flags`, holding one segment of `body` bytes.
    fn page(serial: u32, flags: u8, body: u8) -> Vec<u8> {
        let mut p = b"OggS\0".to_vec();
        p.push(flags);
        p.extend([0; 8]); // granule position
        p.extend(serial.to_le_bytes());
        p.extend([0; 8]); // sequence number, CRC
        p.extend([1, body]);
        p.extend(vec![0; usize::from(body)]);
        p
    }

    #[test]
    fn streams_are_listed_in_the_order_they_start() {
        let data = [
            page(0xFFFF_0001, 2, 30),
            page(7, 2, 19),
            page(3, 2, 0),
            page(7, 0, 200),
            page(9, 2, 5), // a later beginning (a chained section) is not the head
        ]
        .concat();
        assert_eq!(bos_serials(&data), [0xFFFF_0001, 7, 3]);
        assert_eq!(bos_serials(b"fLaC"), Vec::<u32>::new());
        assert_eq!(
            bos_serials(&page(5, 2, 30)[..40]),
            [5],
            "a cut page ends the list"
        );
    }
}
