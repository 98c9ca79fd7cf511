//! The file as symphonia should see it: WAV and AIFF files whose size fields are not the truth,
//! read the way ffmpeg and sox read them, and FLAC files with tags appended.
//!
//! Many writers cannot know the length when they start: ffmpeg and sox writing to a pipe leave
//! the RIFF and `data` sizes at a placeholder (`0xFFFFFFFF`, or 0), a recorder that died leaves
//! them at whatever it wrote first, and some tools write a RIFF size a few bytes short of the
//! chunks it holds. RF64 and BW64 (EBU Tech 3306) keep the real sizes in a `ds64` chunk and a
//! placeholder in the 32-bit fields. symphonia 0.6.1 trusts the fields: a short RIFF size fails
//! with "riff: chunk length exceeds parent (list) chunk length", an unknown `data` size reads a
//! last packet past the end of the file ("unexpected end of file"), and RF64 is not recognised.
//!
//! Rather than fork the reader, the file is handed to symphonia through [`RepairedSource`], a view
//! of the file whose size fields are replaced by the truth: the `data` chunk runs to the end of
//! the file (or to the `ds64` size, when that is smaller), in whole blocks, and the RIFF size
//! covers it. An AIFF cut short gets the same treatment for its `FORM` and `SSND` sizes. A `LIST`
//! chunk ahead of the audio is shown as `JUNK` (skipped): symphonia pads an odd-sized chunk inside
//! it and then the list again, losing the chunk grid when a writer left out the inner pad byte
//! (the INFO tags are read by `riff_info` from the file itself). The bytes of the audio are never
//! touched. A FLAC file with an ID3v1 or APEv2 tag appended (taggers that treat every file as an
//! MP3 do it) is shown without the tag: symphonia's FLAC reader takes the tag for the start of a
//! frame, drops the real last frame with it, and then fails short of STREAMINFO's total. Upstream-
//! ready reports (symphonia-bundle-flac 0.6.1): append `TAG` and 125 spaces to a good FLAC file;
//! it fails with "unexpected end of file". (symphonia-format-riff 0.6.1): (symphonia-format-riff 0.6.1): `ffmpeg -f lavfi -i sine -t 1
//! -f wav - > pipe.wav` (sizes 0xFFFFFFFF) fails with "unexpected end of file"; the same with
//! both sizes set to 0 ("invalid riff length"), `-rf64 always` ("not a recognized audio file"),
//! and any WAV or AIFF cut short ("unexpected end of file").

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use symphonia::core::io::MediaSource;

/// Largest number of chunks walked before `data`; writers put a handful there.
const MAX_CHUNKS_BEFORE_DATA: usize = 64;

/// A 32-bit size field of the file replaced by another value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Patch {
    /// Byte offset of the field in the file.
    at: u64,
    /// The four bytes read there instead.
    bytes: [u8; 4],
}

/// The file as symphonia should see it: the same bytes but for a few corrected header fields.
pub(super) struct RepairedSource {
    file: File,
    patches: Vec<Patch>,
    /// The length shown: the file's, less any tags appended to a FLAC file.
    len: u64,
}

/// Wraps `file` (positioned at its start) in a [`RepairedSource`] when it is a RIFF, RF64 or
/// BW64 WAVE file or an AIFF whose header needs repair, or a FLAC file (`flac`) with tags
/// appended; any other file is returned as it is. Also returns the length shown, in bytes.
pub(super) fn open(mut file: File, flac: bool) -> io::Result<(Box<dyn MediaSource>, u64)> {
    let len = file.metadata()?.len();
    let mut patches = wave_patches(&mut file, len)?;
    patches.extend(aiff_patches(&mut file, len)?);
    let shown = match flac {
        true => len - appended_tags_len(&mut file, len)?,
        false => len,
    };
    file.rewind()?;
    if patches.is_empty() && shown == len {
        return Ok((Box::new(file), len));
    }
    if patches.iter().any(|p| p.bytes != *b"JUNK") {
        tracing::warn!(
            "the header's sizes do not match the file (a placeholder, a streamed, cut or RF64 \
             file): reading the audio to the end of the file, as ffmpeg does"
        );
    }
    let source = RepairedSource {
        file,
        patches,
        len: shown,
    };
    Ok((Box::new(source), shown))
}

/// Bytes of the tags appended to the end of `file` (`len` bytes): an ID3v1 tag (128 bytes
/// starting `TAG`) and, before it or alone, an APEv2 tag (its 32-byte footer starts
/// `APETAGEX`; its size counts the items and the footer, plus a 32-byte header when flagged).
fn appended_tags_len(file: &mut File, len: u64) -> io::Result<u64> {
    let mut tags = 0;
    let mut id3v1 = [0; 3];
    if len >= 128 && read_at(file, len - 128, &mut id3v1)?.is_some() && &id3v1 == b"TAG" {
        tags = 128;
    }
    let mut footer = [0; 32];
    if let Some(at) = (len - tags).checked_sub(32)
        && read_at(file, at, &mut footer)?.is_some()
        && footer.starts_with(b"APETAGEX")
    {
        let size = u64::from(u32::from_le_bytes([
            footer[12], footer[13], footer[14], footer[15],
        ]));
        let flags = u32::from_le_bytes([footer[20], footer[21], footer[22], footer[23]]);
        let header = if flags & 0x8000_0000 != 0 { 32 } else { 0 };
        if size + header <= len - tags {
            tags += size + header;
        }
    }
    Ok(tags)
}

/// The patches that make the `FORM` and `SSND` sizes of the AIFF or AIFF-C file in `file`
/// (`len` bytes) fit the file; none when they do or when it is not an AIFF.
fn aiff_patches(file: &mut File, len: u64) -> io::Result<Vec<Patch>> {
    let mut head = [0; 12];
    if read_at(file, 0, &mut head)?.is_none()
        || &head[..4] != b"FORM"
        || !matches!(&head[8..], b"AIFF" | b"AIFC")
    {
        return Ok(Vec::new());
    }
    let form_size = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    let mut patches = Vec::new();
    let mut at = 12u64;
    for _ in 0..MAX_CHUNKS_BEFORE_DATA {
        let mut header = [0; 8];
        if read_at(file, at, &mut header)?.is_none() {
            break;
        }
        let size = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        let body = at + 8;
        if &header[..4] == b"SSND" {
            let available = len.saturating_sub(body);
            if u64::from(size) > available {
                let fits = u32::try_from(available).unwrap_or(u32::MAX);
                patches.push(Patch {
                    at: at + 4,
                    bytes: fits.to_be_bytes(),
                });
            }
            // The FORM size counts from offset 8 and must cover the sound data, within the file.
            let needed = body + u64::from(size).min(available) - 8;
            let form = u64::from(form_size);
            if form > len.saturating_sub(8) || form < needed {
                let fits = u32::try_from(len.saturating_sub(8)).unwrap_or(u32::MAX);
                patches.push(Patch {
                    at: 4,
                    bytes: fits.to_be_bytes(),
                });
            }
            break;
        }
        at = body + u64::from(size) + u64::from(size % 2);
    }
    Ok(patches)
}

/// The patches that make the header of the WAVE file in `file` (`len` bytes) tell the truth;
/// none when it already does or when it is not a WAVE file this code understands.
fn wave_patches(file: &mut File, len: u64) -> io::Result<Vec<Patch>> {
    let mut head = [0; 12];
    if read_at(file, 0, &mut head)?.is_none() {
        return Ok(Vec::new());
    }
    let marker = &head[..4];
    if !matches!(marker, b"RIFF" | b"RF64" | b"BW64") || &head[8..] != b"WAVE" {
        return Ok(Vec::new());
    }
    let riff_size = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let mut patches = Vec::new();
    if marker != b"RIFF" {
        patches.push(Patch {
            at: 0,
            bytes: *b"RIFF",
        });
    }
    let (mut at, mut block_align, mut ds64_data) = (12u64, 1u64, None);
    for _ in 0..MAX_CHUNKS_BEFORE_DATA {
        let mut header = [0; 8];
        if read_at(file, at, &mut header)?.is_none() {
            return Ok(Vec::new());
        }
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let body = at + 8;
        match &header[..4] {
            b"LIST" => patches.push(Patch {
                at,
                bytes: *b"JUNK",
            }),
            b"fmt " => {
                let mut fmt = [0; 14];
                if read_at(file, body, &mut fmt)?.is_some() {
                    block_align = u64::from(u16::from_le_bytes([fmt[12], fmt[13]])).max(1);
                }
            }
            b"ds64" => {
                let mut ds64 = [0; 16];
                if read_at(file, body, &mut ds64)?.is_some() {
                    let data_size = u64::from_le_bytes(ds64[8..].try_into().unwrap_or_default());
                    ds64_data = Some(data_size).filter(|&n| n > 0);
                }
            }
            b"data" => {
                let available = len.saturating_sub(body);
                let stated = match (marker, ds64_data) {
                    (b"RIFF", _) => Some(u64::from(size)).filter(|&n| n > 0 && n != 0xFFFF_FFFF),
                    (_, ds64) => ds64,
                };
                let data = match stated {
                    Some(n) if n <= available => n,
                    _ => available - available % block_align,
                };
                // Beyond 4 GiB the 32-bit field cannot say it: symphonia then reads to the end.
                let data32 = u32::try_from(data).unwrap_or(u32::MAX);
                if data32 != size {
                    patches.push(Patch {
                        at: at + 4,
                        bytes: data32.to_le_bytes(),
                    });
                }
                // The RIFF size counts from offset 8 and must cover the data chunk.
                let needed = u32::try_from(body + data - 8).unwrap_or(u32::MAX);
                if riff_size < needed || (marker != b"RIFF" && riff_size != needed) {
                    patches.push(Patch {
                        at: 4,
                        bytes: needed.to_le_bytes(),
                    });
                }
                return Ok(patches);
            }
            _ => {}
        }
        // Chunks are padded to an even length (RIFF, Microsoft's 1991 specification).
        at = body + u64::from(size) + u64::from(size % 2);
    }
    Ok(Vec::new())
}

/// Reads `buf.len()` bytes at `at`; `None` when the file ends first.
fn read_at(file: &mut File, at: u64, buf: &mut [u8]) -> io::Result<Option<()>> {
    file.seek(SeekFrom::Start(at))?;
    match file.read_exact(buf) {
        Ok(()) => Ok(Some(())),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

impl Read for RepairedSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let start = self.file.stream_position()?;
        let shown = usize::try_from(self.len.saturating_sub(start)).unwrap_or(usize::MAX);
        let n = buf.len().min(shown);
        let n = self.file.read(&mut buf[..n])?;
        for patch in &self.patches {
            for (i, byte) in patch.bytes.iter().enumerate() {
                let at = patch.at + i as u64;
                if let Some(k) = at.checked_sub(start).filter(|&k| k < n as u64) {
                    buf[k as usize] = *byte;
                }
            }
        }
        Ok(n)
    }
}

impl Seek for RepairedSource {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match pos {
            // The end is the end shown.
            SeekFrom::End(offset) => {
                let to = self.len.checked_add_signed(offset).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "seek before the start")
                })?;
                self.file.seek(SeekFrom::Start(to))
            }
            pos => self.file.seek(pos),
        }
    }
}

impl MediaSource for RepairedSource {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        Some(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{SINE, ffmpeg};
    use super::super::{DecodeOptions, SourceDecoder};
    use super::*;

    /// Frames decoded from `path`, or the error's message.
    fn frames(path: &std::path::Path) -> Result<u64, String> {
        let mut decoder =
            SourceDecoder::open(path, &DecodeOptions::default()).map_err(|e| e.to_string())?;
        while decoder.next_chunk().map_err(|e| e.to_string())?.is_some() {}
        Ok(decoder.frames_decoded())
    }

    /// `bytes` with the little-endian `value` written at `at`.
    fn with_u32(bytes: &[u8], at: usize, value: u32) -> Vec<u8> {
        let mut out = bytes.to_vec();
        out[at..at + 4].copy_from_slice(&value.to_le_bytes());
        out
    }

    #[test]
    fn wav_files_with_untrue_sizes_decode_to_the_end_of_their_data() {
        let dir = tempfile::tempdir().unwrap();
        // A plain 44-byte header: RIFF size at 4, `data` size at 40, audio from 44.
        let good = ffmpeg(dir.path(), "good.wav", SINE, &["-bitexact"]);
        let bytes = std::fs::read(&good).unwrap();
        assert_eq!(&bytes[36..40], b"data", "a 44-byte header");
        let want = frames(&good).unwrap();
        assert_eq!(want, 44_100);
        let riff = bytes.len() as u32 - 8;
        let data = bytes.len() as u32 - 44;
        let streamed = with_u32(&with_u32(&bytes, 4, u32::MAX), 40, u32::MAX);
        let zeros = with_u32(&with_u32(&bytes, 4, 0), 40, 0);
        let mut odd = bytes.clone();
        odd.push(0x55); // half a sample past the data: not audio.
        let cases = [
            ("riff-short.wav", with_u32(&bytes, 4, riff - 6), want),
            ("streamed.wav", streamed, want),
            ("zeros.wav", zeros, want),
            ("data-long.wav", with_u32(&bytes, 40, data + 4000), want),
            ("odd-tail.wav", with_u32(&odd, 40, u32::MAX), want),
            // A file cut short reads as far as it goes, as ffmpeg reads it (mono, 2 bytes a frame).
            ("cut.wav", bytes[..bytes.len() - 401].to_vec(), want - 201),
        ];
        for (name, file, want) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, file).unwrap();
            assert_eq!(frames(&path), Ok(want), "{name}");
        }
    }

    #[test]
    fn aiff_cut_short_and_odd_list_chunks_decode_to_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let aiff = std::fs::read(ffmpeg(dir.path(), "a.aiff", SINE, &[])).unwrap();
        let cut = dir.path().join("cut.aiff");
        std::fs::write(&cut, &aiff[..aiff.len() - 1001]).unwrap();
        assert_eq!(
            frames(&cut),
            Ok(44_100 - 501),
            "mono 16-bit: 2 bytes a frame"
        );

        // A LIST whose odd-sized INFO entry lacks its pad byte (the list itself is padded).
        let wav = std::fs::read(ffmpeg(dir.path(), "b.wav", SINE, &["-bitexact"])).unwrap();
        let list = [
            &b"LIST"[..],
            &15u32.to_le_bytes(),
            b"INFOINAM",
            &3u32.to_le_bytes(),
            b"abc",
            &[0],
        ]
        .concat();
        let mut odd = [&wav[..36], &list, &wav[36..]].concat();
        let riff = u32::try_from(odd.len() - 8).unwrap();
        odd[4..8].copy_from_slice(&riff.to_le_bytes());
        let path = dir.path().join("odd-list.wav");
        std::fs::write(&path, odd).unwrap();
        assert_eq!(frames(&path), Ok(44_100));
    }

    #[test]
    fn rf64_and_bext_files_decode_whole() {
        let dir = tempfile::tempdir().unwrap();
        for (name, extra) in [
            ("rf64.wav", &["-rf64", "always"][..]),
            ("bwf.wav", &["-write_bext", "1"][..]),
            ("streamed-rf64.wav", &["-rf64", "auto"][..]),
        ] {
            let path = ffmpeg(dir.path(), name, SINE, extra);
            assert_eq!(frames(&path), Ok(44_100), "{name}");
        }
    }

    #[test]
    fn correct_and_foreign_files_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        // Only ffmpeg's LIST chunk is shown as JUNK; no size changes.
        let good = ffmpeg(dir.path(), "good.wav", SINE, &[]);
        let mut file = File::open(&good).unwrap();
        let len = file.metadata().unwrap().len();
        let patches = wave_patches(&mut file, len).unwrap();
        assert!(patches.iter().all(|p| p.bytes == *b"JUNK"), "{patches:?}");
        let aiff = ffmpeg(dir.path(), "good.aiff", SINE, &[]);
        let mut file = File::open(&aiff).unwrap();
        let len = file.metadata().unwrap().len();
        assert_eq!(aiff_patches(&mut file, len).unwrap(), Vec::new());
        let flac = ffmpeg(dir.path(), "a.flac", SINE, &[]);
        let mut file = File::open(&flac).unwrap();
        let len = file.metadata().unwrap().len();
        assert_eq!(wave_patches(&mut file, len).unwrap(), Vec::new());
    }
}
