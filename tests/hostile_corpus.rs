//! A corpus of broken inputs made here from valid files of every format: truncated at many
//! offsets, bytes flipped, zero length, the wrong extension, headers claiming huge channel
//! counts, rates or lengths, a tiny file that claims hours. Every file ends in a clear verdict
//! of its own (many truncations still hold decodable audio, and are ingested as such), the
//! batch goes on, nothing panics, and the library holds exactly the files reported ok.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::*;

/// A small deterministic PRNG (xorshift64*), so the corpus is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn every_broken_file_gets_its_own_verdict_and_the_library_holds_only_the_good_ones() {
    let lib = TempLibrary::new();
    let dir = lib.inputs();
    let sources = [
        ("flac", vec!["-c:a", "flac"]),
        ("mp3", vec!["-c:a", "libmp3lame", "-b:a", "128k"]),
        ("ogg", vec!["-c:a", "libvorbis", "-q:a", "3"]),
        ("m4a", vec!["-c:a", "aac", "-b:a", "96k"]),
        ("wav", vec!["-c:a", "pcm_s16le"]),
    ];
    let mut rng = Rng(0x5e9e_0001);
    let mut corpus = Vec::new();
    for (ext, args) in &sources {
        let good = make_input(&dir, &format!("src.{ext}"), 44_100, 1.0, 2, args);
        let bytes = std::fs::read(&good).unwrap();
        std::fs::remove_file(&good).unwrap();
        // Truncated at 12 offsets from the first bytes to just short of the end.
        for k in 0..12usize {
            let cut = match k {
                0 => 1,
                1 => 4,
                2 => 12,
                3 => 45,
                _ => bytes.len() * (k - 3) / 9,
            }
            .min(bytes.len() - 1);
            corpus.push(write_input(
                &dir,
                &format!("trunc-{k}.{ext}"),
                &bytes[..cut],
            ));
        }
        // Eight bytes flipped at random places (headers included), eight times.
        for k in 0..8 {
            let mut flipped = bytes.clone();
            for _ in 0..8 {
                let at = (rng.next() % flipped.len() as u64) as usize;
                flipped[at] ^= (rng.next() % 255 + 1) as u8;
            }
            corpus.push(write_input(&dir, &format!("flip-{k}.{ext}"), &flipped));
        }
        // The right bytes under the wrong extension.
        let wrong = if *ext == "mp3" { "flac" } else { "mp3" };
        corpus.push(write_input(&dir, &format!("renamed-{ext}.{wrong}"), &bytes));
    }
    corpus.extend([
        write_input(&dir, "empty.flac", b""),
        write_input(&dir, "one-byte.wav", b"R"),
        write_input(
            &dir,
            "channels.wav",
            &wav_bytes(65_535, 44_100, 4096, &[0; 4096]),
        ),
        write_input(&dir, "rate.wav", &wav_bytes(2, u32::MAX, 4096, &[0; 4096])),
        // 4 GB of data claimed by a 4 KiB file: hours of audio that are not there.
        write_input(
            &dir,
            "claims-hours.wav",
            &wav_bytes(2, 8_000, u32::MAX - 64, &[0; 4096]),
        ),
        // A FLAC whose STREAMINFO claims 2^36 samples (over 17 days at 44.1 kHz).
        write_input(&dir, "claims-days.flac", &flac_claiming(1 << 36)),
    ]);
    let inputs: Vec<&Path> = corpus.iter().map(PathBuf::as_path).collect();
    let (code, lines) = ingest_json(&lib.library(), &["--jobs", "2"], &inputs);
    assert_eq!(lines.len(), inputs.len(), "one verdict per file");
    assert_eq!(code, 1, "some files failed");
    let mut ok = BTreeSet::new();
    let mut errors = 0;
    for line in &lines {
        let file = line["file"].as_str().unwrap();
        match line["status"].as_str().unwrap() {
            "ok" => {
                ok.insert(line["id"].as_str().unwrap().to_string());
            }
            "error" => {
                errors += 1;
                let reason = line["error"].as_str().unwrap();
                assert!(
                    !reason.is_empty() && !reason.contains('\n'),
                    "{file}: {reason}"
                );
                // The fault is named as the input's, never as a crash, a dead worker or a bug.
                let kind = line["kind"].as_str().unwrap();
                assert!(
                    INPUT_FAULTS.contains(&kind),
                    "{file}: a `{kind}` error, not a fault of the input: {reason}"
                );
            }
            other => panic!("{file}: status {other}"),
        }
    }
    eprintln!(
        "{} broken inputs: {} ingested what they held, {errors} refused",
        lines.len(),
        ok.len()
    );
    for special in [
        "empty.flac",
        "channels.wav",
        "rate.wav",
        "claims-days.flac",
        "one-byte.wav",
    ] {
        let line = lines
            .iter()
            .find(|l| l["file"].as_str().unwrap().ends_with(special))
            .unwrap();
        assert_eq!(line["status"], "error", "{line}");
    }
    let layout = lib.layout();
    let on_disk: BTreeSet<String> = layout.track_ids().unwrap().into_iter().collect();
    assert_eq!(
        on_disk, ok,
        "the library holds exactly the files reported ok"
    );
    assert_eq!(std::fs::read_dir(layout.staging_dir()).unwrap().count(), 0);
}

/// The error kinds (`segue ingest --json`) that blame the input file.
const INPUT_FAULTS: &[&str] = &[
    "read",
    "empty_file",
    "unrecognized_format",
    "no_audio_track",
    "unsupported_codec",
    "beyond_limits",
    "malformed",
    "no_samples",
];

/// A minimal FLAC stream: the `fLaC` marker and a STREAMINFO block claiming `samples` samples
/// at 44.1 kHz stereo 16-bit, with no frames after it.
fn flac_claiming(samples: u64) -> Vec<u8> {
    let mut f = b"fLaC".to_vec();
    f.push(0x80); // last metadata block, type 0 (STREAMINFO)
    f.extend(&[0, 0, 34]);
    f.extend(&4096u16.to_be_bytes()); // min block size
    f.extend(&4096u16.to_be_bytes()); // max block size
    f.extend(&[0, 0, 0, 0, 0, 0]); // min/max frame size unknown
    // 20 bits rate, 3 bits channels-1, 5 bits bps-1, 36 bits total samples.
    let packed: u64 = (44_100u64 << 44) | (1 << 41) | (15 << 36) | (samples & ((1 << 36) - 1));
    f.extend(&packed.to_be_bytes());
    f.extend(&[0; 16]); // MD5 unknown
    f
}
