//! Where a FLAC stream really ends. symphonia 0.6.1's FLAC reader fails with "unexpected end of
//! file" when a stream holds fewer samples than STREAMINFO's total, whatever the reason. Two
//! reasons differ for a library: a file cut short (its last frame is incomplete; ffmpeg reports
//! "Invalid data found" too) and a whole file whose STREAMINFO total is wrong (a tool that
//! edited the audio and not the header; ffmpeg decodes it without a word). The frames the reader
//! returned tell them apart: in a whole file they run from the end of the metadata blocks to
//! the end of the file (tags appended after it are hidden by `repair`). Upstream-ready report (symphonia-bundle-flac
//! 0.6.1): raise the 36-bit total samples of a good file's STREAMINFO; the file no longer
//! decodes.

use std::fs::File;
use std::io::{Read, Seek};

/// Counts the bytes of the FLAC frames read, to tell a whole file from a cut one at its end.
#[derive(Debug)]
pub(super) struct FlacEnd {
    /// Offset of the first frame: after any ID3v2 tag, the marker and the metadata blocks.
    first_frame: u64,
    /// The file's length, in bytes.
    file_len: u64,
    /// Bytes of the frames read so far.
    frame_bytes: u64,
}

impl FlacEnd {
    /// The frame accounting of `file` if it is a FLAC file whose metadata blocks parse; the
    /// file is rewound.
    pub(super) fn open(file: &mut File) -> std::io::Result<Option<Self>> {
        let file_len = file.metadata()?.len();
        let first_frame = first_frame_offset(file);
        file.rewind()?;
        Ok(first_frame.map(|first_frame| Self {
            first_frame,
            file_len,
            frame_bytes: 0,
        }))
    }

    /// The same accounting for a file shown as `file_len` bytes long (tags after it hidden).
    pub(super) fn with_file_len(self, file_len: u64) -> Self {
        Self { file_len, ..self }
    }

    /// Counts a frame of `bytes` bytes.
    pub(super) fn count(&mut self, bytes: usize) {
        self.frame_bytes += bytes as u64;
    }

    /// Whether the frames read run to the end of the file.
    pub(super) fn is_whole(&self) -> bool {
        self.first_frame + self.frame_bytes == self.file_len
    }
}

/// The offset of the first FLAC frame of `file`: an optional ID3v2 tag (ID3v2.4 3.1), the
/// `fLaC` marker, then metadata blocks until the one flagged last (RFC 9639 8).
fn first_frame_offset(file: &mut File) -> Option<u64> {
    let mut at = 0u64;
    let mut head = [0u8; 10];
    file.read_exact(&mut head).ok()?;
    if head.starts_with(b"ID3") {
        let size = head[6..10]
            .iter()
            .fold(0u64, |n, &b| (n << 7) | u64::from(b & 0x7F));
        let footer = if head[5] & 0x10 != 0 { 10 } else { 0 };
        at = 10 + size + footer;
    }
    let mut marker = [0u8; 4];
    file.seek(std::io::SeekFrom::Start(at)).ok()?;
    file.read_exact(&mut marker).ok()?;
    if &marker != b"fLaC" {
        return None;
    }
    at += 4;
    loop {
        let mut block = [0u8; 4];
        file.read_exact(&mut block).ok()?;
        let len = u64::from(u32::from_be_bytes([0, block[1], block[2], block[3]]));
        at += 4 + len;
        if block[0] & 0x80 != 0 {
            return Some(at);
        }
        file.seek(std::io::SeekFrom::Start(at)).ok()?;
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{SINE, decode_with, ffmpeg, ffmpeg_frames};
    use super::super::{DecodeError, DecodeOptions};

    /// `flac` with STREAMINFO's 36-bit total sample count (bytes 21..26 of a plain file) set.
    fn with_total(flac: &[u8], total: u64) -> Vec<u8> {
        let mut out = flac.to_vec();
        let mut field = u64::from_be_bytes(out[18..26].try_into().unwrap());
        field = (field & !((1 << 36) - 1)) | total;
        out[18..26].copy_from_slice(&field.to_be_bytes());
        out
    }

    #[test]
    fn a_wrong_streaminfo_total_is_read_past_but_a_cut_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let flac = std::fs::read(ffmpeg(dir.path(), "a.flac", SINE, &["-c:a", "flac"])).unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        let opts = DecodeOptions::default();
        let frames =
            |path: &std::path::Path| decode_with(path, &opts).map(|(_, pcm)| pcm.len() as u64 / 2);
        for (name, total) in [("more.flac", 44_100 + 10_000), ("fewer.flac", 30_000)] {
            let path = write(name, &with_total(&flac, total));
            assert_eq!(frames(&path).unwrap(), 44_100, "{name}");
            assert_eq!(ffmpeg_frames(&path), 44_100, "{name}");
        }
        // Tags appended by taggers made for MP3: ID3v1, APEv2 (footer only), both.
        let id3v1 = [&b"TAG"[..], &[b' '; 125]].concat();
        let mut ape = b"APETAGEX".to_vec();
        ape.extend(2000u32.to_le_bytes()); // version
        ape.extend(32u32.to_le_bytes()); // size: the footer alone, no items
        ape.extend([0; 16]); // item count, flags, reserved
        for (name, tail) in [
            ("id3v1.flac", id3v1.clone()),
            ("ape.flac", ape.clone()),
            ("both.flac", [ape, id3v1].concat()),
        ] {
            let tagged = write(name, &[&flac[..], &tail].concat());
            assert_eq!(frames(&tagged).unwrap(), 44_100, "{name}");
            assert_eq!(ffmpeg_frames(&tagged), 44_100, "{name}");
        }
        // Cut inside its last frame: ffmpeg reports the damage too ("Invalid data found").
        let cut = write("cut.flac", &flac[..flac.len() - 300]);
        let err = frames(&cut).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed(_)), "{err}");
    }
}
