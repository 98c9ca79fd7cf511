//! The defects of issue 11, each made here as a small file, through the real `segue ingest`:
//! every file is compared with ffmpeg's decode to the sample, as the real-world corpus is
//! (`tests/corpus/compare.rs`), and the few rightful differences must match a named rule.
//! What the files are: MP3 without a Xing header (VBR, whose frame count symphonia estimated
//! far too low, and CBR), MP3s joined (also mono and stereo), tagged at the end (APEv2, ID3v1), with junk after the
//! ID3v2 tag or cut inside a frame, WAV files whose sizes
//! are placeholders, short, zero or RF64, or whose LIST chunk lacks an inner pad byte, FLAC with
//! an ID3v2 tag in front, a wrong STREAMINFO total or tags appended, AIFF-C and an AIFF cut
//! short, a chained Ogg file, and AAC in MP4 with the moov at the end.

mod common;
#[path = "corpus/compare.rs"]
mod compare;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use compare::*;

/// Writes `dir/name` with ffmpeg from `args` (split on whitespace).
fn ffmpeg(dir: &Path, name: &str, args: &str) -> PathBuf {
    let path = dir.join(name);
    let out = path.to_string_lossy();
    let mut argv: Vec<&str> = args.split_whitespace().collect();
    argv.push(&out);
    common::ffmpeg(&argv);
    path
}

/// `bytes` with the 32-bit little-endian `value` at `at`.
fn with_u32_le(mut bytes: Vec<u8>, at: usize, value: u32) -> Vec<u8> {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    bytes
}

/// A minimal ID3v2.3 tag holding one text frame (TIT2) and 100 bytes of padding.
fn id3v2_tag() -> Vec<u8> {
    let mut frame = b"TIT2".to_vec();
    frame.extend(11u32.to_be_bytes());
    frame.extend([0, 0, 0]); // flags, then ISO-8859-1
    frame.extend(b"A title!!!");
    frame.extend([0; 100]);
    let size = frame.len() as u32;
    let syncsafe = [
        (size >> 21) & 0x7F,
        (size >> 14) & 0x7F,
        (size >> 7) & 0x7F,
        size & 0x7F,
    ];
    let mut tag = b"ID3\x03\x00\x00".to_vec();
    tag.extend(syncsafe.map(|b| b as u8));
    tag.extend(frame);
    tag
}

/// An APEv2 tag with one item (a title), header and footer.
fn apev2_tag() -> Vec<u8> {
    let mut item = 5u32.to_le_bytes().to_vec();
    item.extend([0; 4]);
    item.extend(b"Title\0Hello");
    let size = (item.len() + 32) as u32;
    let block = |flags: u32| {
        let mut b = b"APETAGEX".to_vec();
        b.extend(2000u32.to_le_bytes());
        b.extend(size.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        b.extend(flags.to_le_bytes());
        b.extend([0; 8]);
        b
    };
    [block(0xA000_0000), item, block(0x8000_0000)].concat()
}

#[test]
fn issue_11_reproductions_ingest_to_ffmpegs_sample_count() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sine = |secs: f64| format!("-f lavfi -i sine=f=440:r=44100:d={secs}");
    let mut truth: HashMap<PathBuf, u64> = HashMap::new();
    let mut files = Vec::new();
    let mut add = |path: PathBuf, samples: Option<u64>| {
        if let Some(n) = samples {
            truth.insert(path.clone(), n);
        }
        files.push(path);
    };
    let write = |name: &str, bytes: Vec<u8>| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };

    // 1. MP3: the issue's VBR file without a Xing header (30 s, loud then quiet), CBR without
    // one, two LAME files joined, and a LAME file with APEv2 and ID3v1 tags at the end.
    let vbr = "-f lavfi -i anoisesrc=d=5:c=white:r=44100:a=0.5 -f lavfi -i sine=f=440:r=44100:d=25 \
               -filter_complex [1]volume=0.01[q];[0][q]concat=n=2:v=0:a=1 -ac 2 \
               -c:a libmp3lame -q:a 2 -write_xing 0 -id3v2_version 0";
    add(ffmpeg(dir, "vbr-no-xing.mp3", vbr), None);
    let cbr = format!("{} -c:a libmp3lame -b:a 128k -write_xing 0", sine(3.0));
    add(ffmpeg(dir, "cbr-no-xing.mp3", &cbr), None);
    let lame = std::fs::read(ffmpeg(
        dir,
        "lame.mp3",
        &format!("{} -c:a libmp3lame", sine(2.0)),
    ))
    .unwrap();
    add(write("joined.mp3", [&lame[..], &lame].concat()), None);
    let id3v1 = [&b"TAG"[..], &[b' '; 125]].concat();
    let tail = [apev2_tag(), id3v1.clone()].concat();
    // A mono file and a stereo one joined: the channel mode changes mid-stream.
    let stereo = format!("{} -ac 2 -c:a libmp3lame", sine(1.0));
    let stereo = std::fs::read(ffmpeg(dir, "stereo.mp3", &stereo)).unwrap();
    add(
        write("mono-stereo.mp3", [&lame[..], &stereo].concat()),
        None,
    );
    add(write("ape-id3v1.mp3", [&lame[..], &tail].concat()), None);
    // Junk between the ID3v2 tag and the first frame; a LAME file cut inside its last frame.
    let tagged = ffmpeg(
        dir,
        "id3.mp3",
        &format!("{} -c:a libmp3lame -id3v2_version 3", sine(2.0)),
    );
    let tagged = std::fs::read(tagged).unwrap();
    let id3_len = 10
        + tagged[6..10]
            .iter()
            .fold(0, |n, &b| (n << 7) | usize::from(b));
    let junk = [&tagged[..id3_len], &[0; 2000], &tagged[id3_len..]].concat();
    add(write("junk-after-id3.mp3", junk), Some(88_200));
    add(
        write("cut-frame.mp3", lame[..lame.len() - 100].to_vec()),
        None,
    );

    // 2. WAV: RIFF size short of the data (by 4, and covering only `fmt `), ffmpeg writing to a
    // pipe (sizes 0xFFFFFFFF), sizes 0, RF64, a LIST entry without its pad byte.
    let wav = std::fs::read(ffmpeg(
        dir,
        "plain.wav",
        &format!("{} -bitexact", sine(2.0)),
    ))
    .unwrap();
    let riff = wav.len() as u32 - 8;
    add(
        write("riff-short.wav", with_u32_le(wav.clone(), 4, riff - 4)),
        Some(88_200),
    );
    add(
        write("riff-fmt-only.wav", with_u32_le(wav.clone(), 4, 36)),
        Some(88_200),
    );
    let piped = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin"])
        .args(sine(2.0).split_whitespace())
        .args(["-f", "wav", "-"])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(
        &piped[4..8],
        &[0xFF; 4],
        "ffmpeg writes placeholder sizes to a pipe"
    );
    add(write("pipe.wav", piped), Some(88_200));
    let zeros = with_u32_le(with_u32_le(wav.clone(), 4, 0), 40, 0);
    add(write("zero-sizes.wav", zeros), Some(88_200));
    add(
        ffmpeg(dir, "rf64.wav", &format!("{} -rf64 always", sine(2.0))),
        Some(88_200),
    );
    let list = [
        &b"LIST"[..],
        &15u32.to_le_bytes(),
        b"INFOINAM",
        &3u32.to_le_bytes(),
        b"abc\0",
    ]
    .concat();
    let odd = [&wav[..36], &list, &wav[36..]].concat();
    let odd_len = odd.len() as u32 - 8;
    add(
        write("odd-list.wav", with_u32_le(odd, 4, odd_len)),
        Some(88_200),
    );

    // 3. FLAC: an ID3v2 tag in front, a STREAMINFO total larger than the audio, tags appended.
    let flac = std::fs::read(ffmpeg(dir, "plain.flac", &sine(2.0))).unwrap();
    add(
        write("id3v2.flac", [id3v2_tag(), flac.clone()].concat()),
        Some(88_200),
    );
    let mut more = flac.clone();
    let field = u64::from_be_bytes(more[18..26].try_into().unwrap());
    let total = (field & !((1 << 36) - 1)) | 100_000;
    more[18..26].copy_from_slice(&total.to_be_bytes());
    add(write("streaminfo-more.flac", more), Some(88_200));
    add(
        write("tagged.flac", [&flac[..], &tail].concat()),
        Some(88_200),
    );

    // 4. AIFF-C (little-endian `sowt`) and an AIFF cut short (mono 16-bit: 2 bytes a sample).
    add(
        ffmpeg(dir, "sowt.aiff", &format!("{} -c:a pcm_s16le", sine(2.0))),
        Some(88_200),
    );
    let aiff = std::fs::read(ffmpeg(dir, "plain.aiff", &sine(2.0))).unwrap();
    add(
        write("cut.aiff", aiff[..aiff.len() - 1000].to_vec()),
        Some(88_200 - 500),
    );

    // 5. Ogg: two Vorbis files chained; 6. AAC in MP4 with the moov at the end (no faststart).
    let part =
        |name, secs| std::fs::read(ffmpeg(dir, name, &format!("{} -c:a libvorbis", sine(secs))));
    let chained = [part("a.ogg", 1.0).unwrap(), part("b.ogg", 0.5).unwrap()].concat();
    add(write("chained.ogg", chained), Some(66_150));
    add(
        ffmpeg(dir, "moov-end.m4a", &format!("{} -c:a aac", sine(2.0))),
        Some(88_200),
    );

    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    let rows = ingest_and_compare(&files, name, |p| truth.get(p).copied());
    assert_all_explained("issue 11 reproductions", &rows);
}
