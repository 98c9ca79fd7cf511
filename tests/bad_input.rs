//! Bad input: each broken file gets one clear error naming it, the batch goes on, nothing of
//! the file appears in the library, nothing panics.

mod common;

use common::*;

fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    write_input(dir, name, bytes)
}

/// A WAV header claiming `channels` channels at `rate` Hz, followed by `data` bytes.
fn wav_header(channels: u16, rate: u32, data: &[u8]) -> Vec<u8> {
    wav_bytes(channels, rate, data.len() as u32, data)
}

#[test]
fn broken_files_fail_alone_and_leave_the_library_untouched() {
    let lib = TempLibrary::new();
    let dir = lib.inputs();
    let good = make_input(&dir, "good.flac", 44_100, 1.5, 2, &["-c:a", "flac"]);
    let full = make_input(&dir, "full.flac", 44_100, 3.0, 2, &["-c:a", "flac"]);
    let flac = std::fs::read(&full).unwrap();
    std::fs::remove_file(&full).unwrap();
    let noise: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let bad = [
        write(&dir, "empty.mp3", b""),
        write(&dir, "notes.mp3", b"This is a text file, not an MP3.\n"),
        write(&dir, "truncated.flac", &flac[..flac.len() / 2]),
        write(&dir, "noise.wav", &noise),
        write(
            &dir,
            "channels.wav",
            &wav_header(60_000, 44_100, &[0; 4096]),
        ),
        write(&dir, "rate.wav", &wav_header(2, 4_000_000_000, &[0; 4096])),
        write(&dir, "zero-rate.wav", &wav_header(2, 0, &[0; 4096])),
        dir.join("missing.flac"),
    ];
    let mut inputs: Vec<&std::path::Path> = bad.iter().map(|p| p.as_path()).collect();
    inputs.insert(3, &good);
    let (code, lines) = ingest_json(&lib.library(), &["--jobs", "2"], &inputs);
    assert_eq!(code, 1, "a failed input makes the exit status non-zero");
    assert_eq!(lines.len(), inputs.len());
    let mut ok = 0;
    for line in &lines {
        let file = line["file"].as_str().unwrap();
        if file.ends_with("good.flac") {
            assert_eq!(line["status"], "ok", "{line}");
            ok += 1;
            continue;
        }
        assert_eq!(line["status"], "error", "{line}");
        let name = file.rsplit('/').next().unwrap();
        let expected: &[&str] = match name {
            "empty.mp3" => &["empty_file"],
            "notes.mp3" => &["unrecognized_format"],
            // Cut mid-frame: the decoder notices a corrupt frame or a short stream.
            "truncated.flac" => &["malformed"],
            // Noise may or may not look like a RIFF header to a probe.
            "noise.wav" => &["unrecognized_format", "malformed"],
            "channels.wav" | "rate.wav" | "zero-rate.wav" => &["beyond_limits"],
            "missing.flac" => &["read"],
            other => panic!("unexpected input {other}"),
        };
        let kind = line["kind"].as_str().unwrap_or_default();
        assert!(expected.contains(&kind), "{file}: kind {kind}: {line}");
        let reason = line["error"].as_str().unwrap();
        assert!(!reason.is_empty(), "{file}: {line}");
        assert!(!reason.contains('\n'), "one line: {reason}");
    }
    assert_eq!(ok, 1);
    let layout = lib.layout();
    assert_eq!(
        layout.track_ids().unwrap().len(),
        1,
        "only the good file is in the library"
    );
    assert_eq!(
        std::fs::read_dir(layout.staging_dir()).unwrap().count(),
        0,
        "no staging left behind"
    );

    // The text output names the file and the reason, one line each.
    let (code, _, stderr) = segue(&[
        "ingest",
        "--library",
        &lib.library().to_string_lossy(),
        &bad[1].to_string_lossy(),
    ]);
    assert_eq!(code, 1);
    let line = stderr
        .lines()
        .find(|l| l.contains("notes.mp3"))
        .expect("a line names the file");
    assert!(line.starts_with("error"), "{line}");
}

#[test]
fn specific_reasons_are_given() {
    let lib = TempLibrary::new();
    let dir = lib.inputs();
    let empty = write(&dir, "empty.flac", b"");
    let text = write(
        &dir,
        "text.mp3",
        b"hello hello hello hello hello hello hello\n",
    );
    let channels = write(
        &dir,
        "channels.wav",
        &wav_header(60_000, 44_100, &[0; 4096]),
    );
    let (_, lines) = ingest_json(&lib.library(), &[], &[&empty, &text, &channels]);
    let kind = |i: usize| lines[i]["kind"].as_str().unwrap_or_default();
    let reason = |i: usize| lines[i]["error"].as_str().unwrap();
    assert_eq!(kind(0), "empty_file", "{}", lines[0]);
    assert_eq!(kind(1), "unrecognized_format", "{}", lines[1]);
    assert_eq!(kind(2), "beyond_limits", "{}", lines[2]);
    // The message names the value and the limit it broke.
    assert!(reason(2).contains("channel count 60000"), "{}", reason(2));
}

#[test]
fn killed_ingest_leaves_no_half_track_and_the_rerun_completes() {
    let lib = TempLibrary::new();
    let input = make_input(
        &lib.inputs(),
        "long.flac",
        44_100,
        40.0,
        2,
        &["-c:a", "flac"],
    );
    let library = lib.library().to_string_lossy().to_string();
    let layout = lib.layout();
    for delay_ms in [150u64, 400, 900] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_segue"))
            .args([
                "ingest",
                "--json",
                "--library",
                &library,
                &input.to_string_lossy(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the staging directory exists (the ingest is under way), then kill -9.
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(30) {
            let staging = std::fs::read_dir(layout.staging_dir())
                .map(|d| d.count())
                .unwrap_or(0);
            if staging > 0 || child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        // Either nothing or the whole track is visible.
        for id in layout.track_ids().unwrap() {
            let record = lib.record(&id);
            let dir = layout.track_dir(&id);
            for r in &record.renditions {
                assert!(dir.join(&r.dir).join(&r.init).is_file());
                assert!(dir.join(&r.dir).join(&r.playlist).is_file());
            }
        }
    }
    let (code, lines) = ingest_json(&lib.library(), &[], &[&input]);
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(layout.track_ids().unwrap().len(), 1);
    assert_eq!(
        std::fs::read_dir(layout.staging_dir()).unwrap().count(),
        0,
        "stale staging swept"
    );
    let (_, stdout, _) = segue(&["list", "--json", "--library", &library]);
    let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "the catalog matches the directories"
    );
}
