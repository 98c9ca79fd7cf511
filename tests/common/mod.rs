//! Shared helpers for the integration tests: synthesized inputs (made with ffmpeg from a
//! music-like signal), a temp library, ffmpeg/ffprobe wrappers, our fMP4 decoded strictly
//! with mp4-atom ([`fmp4`]), `segue serve` as a child process ([`serve`]), an S3-compatible
//! server ([`s3`]) and a Redis server ([`redis`]).
#![allow(dead_code)]

pub mod fmp4;
mod record;
pub mod redis;
pub mod s3;
pub mod serve;

#[allow(unused_imports)] // each test binary uses some of these
pub use record::test_record;
#[allow(unused_imports)] // each test binary uses some of these
pub use serve::{ServeCommand, ServeProcess};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

// What `record` names unqualified (it is shared with the crate's unit tests).
use segue::catalog::{
    Gapless, Loudness, PackagingRecord, RenditionRecord, SourceRecord, TRACK_RECORD_VERSION,
    TrackRecord,
};
use segue::store::{LibraryLayout, TRACK_RECORD_FILE, layout};

/// A music-like test signal (three tones with tremolo plus a sweep), `seconds` long, as an
/// ffmpeg lavfi source expression at `rate` Hz.
pub fn signal(rate: u32, seconds: f64) -> String {
    format!(
        "aevalsrc='0.25*sin(2*PI*220*t)*(0.6+0.4*sin(2*PI*2*t))+0.15*sin(2*PI*330*t)+0.1*sin(2*PI*(440+200*t)*t)|0.25*sin(2*PI*277*t)*(0.6+0.4*cos(2*PI*3*t))+0.15*sin(2*PI*415*t)+0.1*sin(2*PI*(660-100*t)*t)':s={rate}:d={seconds}"
    )
}

/// Runs `program` (ffmpeg, ffprobe) quietly with `args`; panics with its stderr unless it
/// exits 0. Returns its stdout.
pub fn run_tool(program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(["-hide_banner", "-loglevel", "error"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is installed (.ci/run installs it): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs ffmpeg with `args` (quiet, overwrite), panicking with its stderr on failure.
pub fn ffmpeg(args: &[&str]) {
    run_tool("ffmpeg", &[&["-nostdin", "-y"], args].concat());
}

/// Makes an input file from the test signal: `codec_args` are ffmpeg output options.
pub fn make_input(
    dir: &Path,
    name: &str,
    rate: u32,
    seconds: f64,
    channels: u32,
    codec_args: &[&str],
) -> PathBuf {
    let path = dir.join(name);
    let src = signal(rate, seconds);
    let layout = match channels {
        1 => "mono",
        2 => "stereo",
        6 => "5.1",
        _ => panic!("unsupported channel count in test"),
    };
    let mut args = vec!["-f", "lavfi", "-i", &src];
    let filter = format!("pan={layout}|c0=c0{}", pan_rest(channels));
    args.extend([
        "-af",
        &filter,
        "-fflags",
        "+bitexact",
        "-map_metadata",
        "-1",
    ]);
    args.extend(codec_args);
    let p = path.to_string_lossy().to_string();
    args.push(&p);
    ffmpeg(&args);
    path
}

/// Makes a stereo 16-bit WAV of the test signal (the plainest input: what most tests ingest).
pub fn make_wav(dir: &Path, name: &str, rate: u32, seconds: f64) -> PathBuf {
    make_input(dir, name, rate, seconds, 2, &["-c:a", "pcm_s16le"])
}

fn pan_rest(channels: u32) -> String {
    (1..channels).map(|c| format!("|c{c}=c{}", c % 2)).collect()
}

/// A fresh library in a temp dir.
pub struct TempLibrary {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
}

impl TempLibrary {
    /// Creates an empty temp dir for a library and its inputs.
    pub fn new() -> Self {
        TempLibrary {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Library root.
    pub fn library(&self) -> PathBuf {
        self.dir.path().join("library")
    }

    /// Where test inputs go.
    pub fn inputs(&self) -> PathBuf {
        let p = self.dir.path().join("inputs");
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// The layout of the library.
    pub fn layout(&self) -> LibraryLayout {
        LibraryLayout::new(self.library())
    }

    /// Reads a track record.
    pub fn record(&self, id: &str) -> TrackRecord {
        let path = self.layout().track_dir(id).join(TRACK_RECORD_FILE);
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }
}

/// Runs the `segue` binary with `args`; returns (exit code, stdout, stderr).
pub fn segue(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_segue"))
        .args(args)
        .output()
        .expect("run segue");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Ingests files with the CLI (`--json`) into `library`; returns the parsed JSON lines.
pub fn ingest_json(
    library: &Path,
    extra: &[&str],
    inputs: &[&Path],
) -> (i32, Vec<serde_json::Value>) {
    let lib = library.to_string_lossy().to_string();
    let mut args = vec!["ingest", "--json", "--library", &lib];
    args.extend(extra);
    let inputs: Vec<String> = inputs
        .iter()
        .map(|p| p.to_string_lossy().to_string())
        .collect();
    args.extend(inputs.iter().map(String::as_str));
    let (code, stdout, stderr) = segue(&args);
    let lines = stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}\nstderr: {stderr}"))
        })
        .collect();
    (code, lines)
}

/// Decodes any media ffmpeg can read (a file, a playlist) to interleaved f32 stereo at its own
/// rate; returns the samples. `pre` are input options.
pub fn decode_f32(pre: &[&str], input: &str) -> Vec<f32> {
    decode_f32_filtered(pre, input, "anull")
}

/// Like [`decode_f32`], through the audio filter graph `filter`.
pub fn decode_f32_filtered(pre: &[&str], input: &str, filter: &str) -> Vec<f32> {
    let output = ["-i", input, "-af", filter, "-f", "f32le", "-ac", "2", "-"];
    run_tool("ffmpeg", &[&["-nostdin"], pre, &output].concat())
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Concatenates a rendition's init and media segments into one fragmented MP4 file.
pub fn concat_rendition(track_dir: &Path, record: &TrackRecord, rendition: usize, out: &Path) {
    let r = &record.renditions[rendition];
    let dir = track_dir.join(&r.dir);
    let mut bytes = std::fs::read(dir.join(&r.init)).unwrap();
    for i in 0..record.segment_durations.len() {
        bytes.extend(std::fs::read(dir.join(layout::segment_name(i))).unwrap());
    }
    std::fs::write(out, bytes).unwrap();
}

/// Normalized cross-correlation of the left channels of `a` and `b` at `lag` (b shifted).
pub fn correlation(a: &[f32], b: &[f32], lag: i64) -> f64 {
    let n = a.len().min(b.len()) / 2;
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for i in 0..n {
        let j = i as i64 + lag;
        if j < 0 || j as usize >= n {
            continue;
        }
        let x = f64::from(a[2 * i]);
        let y = f64::from(b[2 * j as usize]);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(1e-12)
}

/// The lag in [-max, max] with the highest correlation.
pub fn best_lag(a: &[f32], b: &[f32], max: i64) -> (i64, f64) {
    (-max..=max)
        .map(|lag| (lag, correlation(a, b, lag)))
        .fold((0, f64::MIN), |best, x| if x.1 > best.1 { x } else { best })
}

/// Ingests one generated WAV (`seconds` at `rate` Hz, stereo) into a fresh temp library with the
/// CLI; returns the library, the input, the track id and its record.
pub fn ingest_generated_wav(
    rate: u32,
    seconds: f64,
) -> (TempLibrary, PathBuf, String, TrackRecord) {
    let lib = TempLibrary::new();
    let input = make_wav(&lib.inputs(), "song.wav", rate, seconds);
    let id = ingest_one(&lib.library(), &input);
    let record = lib.record(&id);
    (lib, input, id, record)
}

/// Ingests `input` with the CLI into `library`, which must succeed; returns the track id.
pub fn ingest_one(library: &Path, input: &Path) -> String {
    let (code, lines) = ingest_json(library, &[], &[input]);
    assert_eq!(code, 0, "ingest {} failed: {lines:?}", input.display());
    lines[0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no track id in {lines:?}"))
        .to_string()
}

/// A batch observer that says nothing, for tests that call `ingest_batch` directly.
pub struct QuietObserver;

impl segue::ingest::batch::BatchObserver for QuietObserver {
    fn planned(&self, _: &[PathBuf]) {}
    fn started(&self, _: &Path) -> Box<dyn segue::ingest::pipeline::Progress + '_> {
        Box::new(())
    }
    fn finished(&self, _: &segue::ingest::batch::FileReport) {}
}

/// Writes `bytes` to `dir/name`; returns the path.
pub fn write_input(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A WAV file: a 44-byte header claiming `channels` × `rate` Hz, 16-bit, and a data chunk of
/// `data_len` bytes (which may lie), followed by `body`.
pub fn wav_bytes(channels: u16, rate: u32, data_len: u32, body: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend(b"RIFF");
    h.extend(&(36u32.wrapping_add(data_len)).to_le_bytes());
    h.extend(b"WAVEfmt ");
    h.extend(&16u32.to_le_bytes());
    h.extend(&1u16.to_le_bytes());
    h.extend(&channels.to_le_bytes());
    h.extend(&rate.to_le_bytes());
    h.extend(&(rate.wrapping_mul(u32::from(channels)).wrapping_mul(2)).to_le_bytes());
    h.extend(&(channels.wrapping_mul(2)).to_le_bytes());
    h.extend(&16u16.to_le_bytes());
    h.extend(b"data");
    h.extend(&data_len.to_le_bytes());
    h.extend(body);
    h
}

/// An HTTP response as read off the wire by the tests' raw-socket clients.
#[derive(Debug)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Header fields in order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body as received.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first field named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (lowercase), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The names in `dir` (none if it does not exist).
pub fn entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts that the library is consistent and returns its track ids: every track directory is
/// complete (each file its record lists exists, media at the recorded size), no staging is left,
/// and the catalog, once opened (which reconciles it), lists exactly the track directories.
pub fn assert_consistent(lib: &TempLibrary) -> BTreeSet<String> {
    let layout = lib.layout();
    let dirs = entries(&layout.tracks_dir());
    for id in &dirs {
        let record = lib.record(id);
        let track = layout.track_dir(id);
        for r in &record.renditions {
            let dir = track.join(&r.dir);
            let size = |name: &str| std::fs::metadata(dir.join(name)).map(|m| m.len()).ok();
            assert_eq!(size(&r.init), Some(r.init_bytes), "{id}: {}", r.init);
            assert!(size(&r.playlist).is_some(), "{id}: {} missing", r.playlist);
            for (i, &bytes) in r.segment_sizes.iter().enumerate() {
                let name = layout::segment_name(i);
                assert_eq!(size(&name), Some(bytes), "{id}: {}/{name}", r.dir);
            }
        }
        for name in [&record.hls_master, &record.dash_mpd, &record.waveform] {
            assert!(track.join(name).is_file(), "{id}: {name} missing");
        }
    }
    layout.create().unwrap();
    let catalog = segue::catalog::Catalog::open(&layout).unwrap();
    let indexed: BTreeSet<String> = catalog.ids().unwrap().into_iter().collect();
    assert_eq!(indexed, dirs, "catalog and track directories differ");
    assert!(
        entries(&layout.staging_dir()).is_empty(),
        "staging left behind"
    );
    dirs
}

/// Sends `signal` to the peer server `child` (named `name` in the panic), which must be
/// running: how the Redis and S3 peers are paused (SIGSTOP) and resumed (SIGCONT).
pub fn signal_peer(
    child: Option<&std::process::Child>,
    signal: rustix::process::Signal,
    name: &str,
) {
    let child = child.unwrap_or_else(|| panic!("the {name} is running"));
    rustix::process::kill_process(rustix::process::Pid::from_child(child), signal)
        .unwrap_or_else(|e| panic!("signal {signal:?} to the {name}: {e}"));
}
