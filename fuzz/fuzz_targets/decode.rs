//! The decode stage exactly as `segue ingest` runs it on a file: `SourceDecoder::open` (header
//! limits, symphonia's probe, tags and cover art, the MP4 edit list read again from the file)
//! then `next_chunk` until the end.
//!
//! The input is written to a file, as `open` and the MP4 gapless reader take a path. segue
//! contains panics in two places: the decoder's guard turns a symphonia panic into
//! `DecodeError::Panicked`, and the batch runner catches any other panic of an ingest; this target
//! contains them the same way (see `segue_fuzz::init`), so what it reports is what would take an
//! ingest or the server down: an abort, an allocation over `-malloc_limit_mb`, memory over
//! `-rss_limit_mb`, a hang over `-timeout`, or a broken promise of the decoder's API. Decoding
//! stops after `MAX_FRAMES`: a tiny file may rightly claim hours of audio, which would make each
//! input slow without covering anything new.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use segue::ingest::decode::{DecodeError, DecodeOptions, SourceDecoder};

/// Frames (per channel) decoded per input at most.
const MAX_FRAMES: u64 = 1 << 18;

fuzz_target!(init: segue_fuzz::init(), |data: &[u8]| {
    let path = input_path();
    std::fs::write(path, data).expect("write the input file");
    decode(path);
});

/// Where this process writes each input (one file per process, in memory where possible).
fn input_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::var_os("SEGUE_FUZZ_TMPDIR")
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|d| d.is_dir()))
            .unwrap_or_else(std::env::temp_dir);
        let path = dir.join(format!("segue-fuzz-decode-{}.bin", std::process::id()));
        remove_at_exit(&path);
        path
    })
}

fn remove_at_exit(path: &Path) {
    static REMOVE: OnceLock<std::ffi::CString> = OnceLock::new();
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    REMOVE.get_or_init(|| c_path);
    extern "C" fn remove() {
        if let Some(path) = REMOVE.get() {
            // SAFETY: a valid NUL-terminated path that lives for the whole process.
            unsafe { libc::unlink(path.as_ptr()) };
        }
    }
    // SAFETY: registers a plain function; libFuzzer leaves through exit() on a normal end.
    unsafe { libc::atexit(remove) };
}

/// Decodes the file at `path`, checking the decoder's promises. Only segue's own calls run
/// inside `contained`: a panic that escapes them (the decoder's guard covers symphonia's) would be
/// caught by segue's batch runner and fail the file, so it ends the input here, printed once per
/// location by `init`; the checks below run outside, where a failed one is a crash.
fn decode(path: &Path) {
    let options = DecodeOptions::default();
    let Ok(opened) = segue_fuzz::contained(|| SourceDecoder::open(path, &options)) else {
        return;
    };
    let mut decoder = match opened {
        Ok(decoder) => decoder,
        Err(e) => return check_error(&e),
    };
    let info = decoder.info().clone();
    assert!((options.min_sample_rate..=options.max_sample_rate).contains(&info.sample_rate));
    assert!((1..=options.max_channels).contains(&info.channels));
    let _ = (decoder.tags(), decoder.cover());

    // The length of the next chunk in samples, `None` at the end.
    let next = |decoder: &mut SourceDecoder| {
        segue_fuzz::contained(|| decoder.next_chunk().map(|chunk| chunk.map(<[f32]>::len)))
    };
    let mut frames = 0u64;
    loop {
        let Ok(chunk) = next(&mut decoder) else {
            return;
        };
        match chunk {
            Ok(Some(samples)) => {
                assert!(
                    samples > 0 && samples % 2 == 0,
                    "not stereo: {samples} samples"
                );
                frames += samples as u64 / 2;
                assert_eq!(frames, decoder.frames_decoded());
                if frames >= MAX_FRAMES {
                    return;
                }
            }
            Ok(None) => break,
            Err(e) => {
                check_error(&e);
                // After an error the decoder is done (DecodeError's doc).
                assert!(matches!(next(&mut decoder), Ok(Ok(None))));
                return;
            }
        }
    }
    // A decoder that ended stays ended.
    assert!(matches!(next(&mut decoder), Ok(Ok(None))));
}

fn check_error(e: &DecodeError) {
    // Every error must render: ingest prints it and stores it in the JSON report.
    assert!(!e.to_string().is_empty());
}
