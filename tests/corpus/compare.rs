//! Comparing what segue ingests from a file with what ffmpeg decodes from it, sample for sample,
//! and the documented rules for where the two rightly differ. Shared by
//! `tests/real_world_corpus.rs` (files other people's tools wrote) and
//! `tests/ingest_reproductions.rs` (the defects of issue 11, made here).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::common::*;

/// One corpus file and what each side made of it.
pub(crate) struct Row {
    /// The file.
    pub(crate) path: PathBuf,
    /// Path relative to the cache (`files/<package>/<path in the package>`).
    pub(crate) file: String,
    /// What ffprobe says the file holds.
    pub(crate) probe: Probe,
    /// Samples per channel that ffmpeg decodes at the source rate, or why it cannot.
    pub(crate) ffmpeg: Result<u64, String>,
    /// What segue made of it.
    pub(crate) segue: Segue,
    /// The sample count of the audio the file was made from, when the test made it.
    pub(crate) truth: Option<u64>,
}

/// ffprobe's view of a file's first audio stream.
#[derive(Default)]
pub(crate) struct Probe {
    pub(crate) format: String,
    pub(crate) codec: String,
    /// Source rate in Hz (0 when ffprobe found no audio stream).
    pub(crate) rate: u32,
    pub(crate) channels: u32,
}

/// segue's result for one file.
pub(crate) enum Segue {
    /// Ingested: source samples at the source rate, source rate, valid samples at the output
    /// rate, output rate.
    Ok {
        source_samples: u64,
        source_rate: u32,
        valid_samples: u64,
        output_rate: u32,
    },
    /// Refused, with segue's message.
    Error(String),
}

/// A documented difference between segue and ffmpeg that is not a defect. Each rule names the
/// class of files and why the difference is right; a row that no rule covers fails the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Both tools agree to the sample (the expected case, not a difference).
    Exact,
    /// ffmpeg cannot decode the file either (for example WAV with format tag 0x674f, Vorbis in
    /// a RIFF wrapper, which lmms ships named `.ogg`): segue must refuse it with an error, never
    /// report it "ok" with a length nobody can check.
    BothRefuse,
    /// Ogg Vorbis whose first audio page is also the last one (end-of-stream flag; short sound
    /// effects: the freedesktop and Oxygen themes, minetest). ffmpeg 5.1 does not end the stream
    /// at that page's granule position: it returns 128 samples fewer (a half short block) or
    /// every decoded sample (216 to 356 more). The Vorbis I spec (A.2) says the final page's
    /// granule position ends the stream; libvorbisfile, the reference decoder (here through
    /// sox), returns exactly that many samples, and so must segue. The rule checks the page
    /// layout, and that segue equals both the final granule position and libvorbisfile's count.
    OggVorbisOnePageFfmpegMiscounts,
    /// AAC in MP4 whose edit list (or iTunSMPB) states the end padding: ffmpeg 5.1 removes the
    /// encoder's priming but keeps the padding (one frame's worth, up to 1024 samples more than
    /// the source). segue ends where the file says, which is the source's length; the rule holds
    /// only for files made here from a source of known length.
    FfmpegKeepsMp4EndPadding,
    /// A chained Ogg Vorbis file (sections one after another): ffmpeg 5.1 is 128 samples (half
    /// a short block) off at a section boundary, more or fewer depending on the sections' page
    /// layout; segue keeps each section's own granule trims, so the sum of the sections, which
    /// is the source's length. Only for files made here from a source of known length.
    FfmpegMiscountsOggChain,
    /// An MP3 with junk between its ID3v2 tag and the first frame: ffmpeg skips the junk and,
    /// with it, the LAME header frame, so it trims neither the delay nor the padding (a frame's
    /// worth or more of extra samples); segue finds the LAME tag and ends at the source's
    /// length. Only for files made here from a source of known length.
    FfmpegMissesLameTagAfterJunk,
    /// An MP3 cut inside its last frame: ffmpeg decodes the cut frame, filling the missing part
    /// with silence, and trims the LAME padding as if the file were whole; symphonia drops the
    /// cut frame, and segue, seeing the stream end short of the Xing frame count, keeps the
    /// padding it held back. segue ends less than one frame (1152 samples) short of ffmpeg; the
    /// audio it lacks was in the missing bytes.
    Mp3CutFrameDropped,
}

impl Row {
    /// The rule that explains this row, or `None` for a mismatch (a defect to fix).
    pub(crate) fn rule(&self) -> Option<Rule> {
        match (&self.ffmpeg, &self.segue) {
            (Err(_), Segue::Error(_)) => Some(Rule::BothRefuse),
            (
                Ok(n),
                Segue::Ok {
                    source_samples,
                    source_rate,
                    valid_samples,
                    output_rate,
                },
            ) if *source_samples == *n
                && *source_rate == self.probe.rate
                && *valid_samples == expected_valid(*n, *source_rate, *output_rate) =>
            {
                Some(Rule::Exact)
            }
            (
                Ok(_),
                Segue::Ok {
                    source_samples,
                    source_rate,
                    valid_samples,
                    output_rate,
                },
            ) if self.probe.codec == "vorbis"
                && self.probe.format == "ogg"
                && *source_rate == self.probe.rate
                && *valid_samples
                    == expected_valid(*source_samples, *source_rate, *output_rate)
                && ogg_first_audio_page_is_last(&self.path) == Some(*source_samples)
                && vorbisfile_samples(&self.path) == Some(*source_samples) =>
            {
                Some(Rule::OggVorbisOnePageFfmpegMiscounts)
            }
            (Ok(n), Segue::Ok { source_samples, .. })
                if self.truth == Some(*source_samples)
                    && *n > *source_samples
                    && *n - *source_samples <= 1024
                    && self.probe.codec == "aac"
                    && self.probe.format.starts_with("mov") =>
            {
                Some(Rule::FfmpegKeepsMp4EndPadding)
            }
            (Ok(n), Segue::Ok { source_samples, .. })
                if self.truth == Some(*source_samples)
                    && n.abs_diff(*source_samples) == 128
                    && self.probe.format == "ogg" =>
            {
                Some(Rule::FfmpegMiscountsOggChain)
            }
            (Ok(n), Segue::Ok { source_samples, .. })
                if self.truth == Some(*source_samples)
                    && *n > *source_samples
                    && self.probe.codec == "mp3"
                    && self.path.to_string_lossy().contains("junk") =>
            {
                Some(Rule::FfmpegMissesLameTagAfterJunk)
            }
            (Ok(n), Segue::Ok { source_samples, .. })
                if *n > *source_samples
                    && *n - *source_samples < 1152
                    && self.probe.codec == "mp3"
                    && self.path.to_string_lossy().contains("cut") =>
            {
                Some(Rule::Mp3CutFrameDropped)
            }
            _ => None,
        }
    }
}

/// The final granule position of an Ogg file with one logical stream whose first page with a
/// granule position (past the header pages, whose granule is 0) carries the end-of-stream flag;
/// `None` for any other layout. Pages per RFC 3533 section 6.
pub(crate) fn ogg_first_audio_page_is_last(file: &Path) -> Option<u64> {
    let bytes = std::fs::read(file).ok()?;
    let mut at = 0;
    let mut serial = None;
    while at < bytes.len() {
        let page = bytes.get(at..at + 27)?;
        if &page[..4] != b"OggS" || *serial.get_or_insert(&page[14..18]) != &page[14..18] {
            return None;
        }
        let end_of_stream = page[5] & 0x04 != 0;
        let granule = i64::from_le_bytes(page[6..14].try_into().ok()?);
        let segments = usize::from(page[26]);
        let body: usize = bytes
            .get(at + 27..at + 27 + segments)?
            .iter()
            .map(|&s| usize::from(s))
            .sum();
        at += 27 + segments + body;
        if granule > 0 {
            return (end_of_stream && at == bytes.len()).then_some(granule as u64);
        }
    }
    None
}

/// Samples per channel that libvorbisfile (through sox) decodes from `file`, or `None` if sox
/// cannot read it.
pub(crate) fn vorbisfile_samples(file: &Path) -> Option<u64> {
    let out = Command::new("sox")
        .args(["-V1"])
        .arg(file)
        .args(["-t", "raw", "-e", "signed", "-b", "16", "-c", "1", "-"])
        .output()
        .expect("sox is installed (.ci/run installs it)");
    out.status.success().then_some(out.stdout.len() as u64 / 2)
}

/// `valid_samples` for `n` source samples at `source_rate` resampled to `output_rate` (the
/// resampler keeps every partial output period: round up).
pub(crate) fn expected_valid(n: u64, source_rate: u32, output_rate: u32) -> u64 {
    (n * u64::from(output_rate)).div_ceil(u64::from(source_rate))
}

/// ffprobe's format and first audio stream of `file`.
pub(crate) fn probe(file: &Path) -> Probe {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json", "-select_streams", "a:0"])
        .args([
            "-show_entries",
            "format=format_name:stream=codec_name,sample_rate,channels",
        ])
        .arg(file)
        .output()
        .expect("ffprobe is installed (.ci/run installs it)");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let stream = &json["streams"][0];
    Probe {
        format: json["format"]["format_name"]
            .as_str()
            .unwrap_or("?")
            .to_owned(),
        codec: stream["codec_name"].as_str().unwrap_or("?").to_owned(),
        rate: stream["sample_rate"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0),
        channels: stream["channels"].as_u64().unwrap_or(0) as u32,
    }
}

/// Samples per channel that ffmpeg decodes from `file`'s first audio stream at its own rate:
/// raw 16-bit mono PCM, bytes counted (exact; the downmix does not change the count).
pub(crate) fn ffmpeg_samples(file: &Path) -> Result<u64, String> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-nostdin", "-i"])
        .arg(file)
        .args([
            "-map",
            "0:a:0",
            "-f",
            "s16le",
            "-c:a",
            "pcm_s16le",
            "-ac",
            "1",
            "-",
        ])
        .output()
        .expect("ffmpeg is installed (.ci/run installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || out.stdout.is_empty() {
        return Err(stderr.lines().last().unwrap_or("no audio").to_owned());
    }
    Ok(out.stdout.len() as u64 / 2)
}

pub(crate) fn cell_ffmpeg(r: &Row) -> String {
    match &r.ffmpeg {
        Ok(n) => n.to_string(),
        Err(_) => "refused".into(),
    }
}

/// One line of the table: file, format, codec, rate, channels, segue's samples at the source
/// rate, ffmpeg's, the difference, then the output-rate check and the messages.
pub(crate) fn table_line(r: &Row) -> String {
    let p = &r.probe;
    let (segue, diff, out) = match (&r.segue, &r.ffmpeg) {
        (
            Segue::Ok {
                source_samples,
                source_rate,
                valid_samples,
                output_rate,
            },
            ffmpeg,
        ) => {
            let diff = match ffmpeg {
                Ok(n) => format!("{:+}", *source_samples as i64 - *n as i64),
                Err(_) => "-".into(),
            };
            let expected = ffmpeg
                .as_ref()
                .map(|n| expected_valid(*n, *source_rate, *output_rate).to_string())
                .unwrap_or_else(|_| "-".into());
            let rate_note = if *source_rate != p.rate {
                format!(" (segue reads {source_rate} Hz)")
            } else {
                String::new()
            };
            (
                source_samples.to_string(),
                diff,
                format!("valid {valid_samples} @{output_rate}, want {expected}{rate_note}"),
            )
        }
        (Segue::Error(e), _) => ("refused".into(), "-".into(), format!("segue: {e}")),
    };
    let ffmpeg_note = match &r.ffmpeg {
        Err(e) => format!("; ffmpeg: {e}"),
        Ok(_) => String::new(),
    };
    format!(
        "{:<78} {:<8} {:<10} {:>6} {:>2} {:>9} {:>9} {:>8}  {out}{ffmpeg_note}",
        r.file,
        p.format.split(',').next().unwrap_or("?"),
        p.codec,
        p.rate,
        p.channels,
        segue,
        cell_ffmpeg(r),
        diff,
    )
}

/// Ingests `files` in one `segue ingest --json` run (two at a time, one AAC-LC rung: the sample
/// counts under test come from the decoder, not from the ladder) and pairs each with what
/// ffprobe and ffmpeg make of it; `name` gives the file's name in the table.
/// `truth` gives the source length of a file the test made (or `None`).
pub(crate) fn ingest_and_compare(
    files: &[PathBuf],
    name: impl Fn(&Path) -> String,
    truth: impl Fn(&Path) -> Option<u64>,
) -> Vec<Row> {
    let lib = TempLibrary::new();
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let (_, lines) = ingest_json(
        &lib.library(),
        &["--jobs", "2", "--ladder", "aac-lc:128k"],
        &refs,
    );
    files
        .iter()
        .map(|file| {
            let file_str = file.to_string_lossy();
            let line = lines
                .iter()
                .find(|l| l["file"].as_str() == Some(&*file_str))
                .unwrap_or_else(|| panic!("segue reported nothing for {file_str}"));
            let segue = if line["status"] == "ok" {
                let record = lib.record(line["id"].as_str().unwrap());
                Segue::Ok {
                    source_samples: record.source.samples,
                    source_rate: record.source.sample_rate,
                    valid_samples: record.gapless.valid_samples,
                    output_rate: record.sample_rate,
                }
            } else {
                Segue::Error(line["error"].as_str().unwrap_or("?").replace('\n', " "))
            };
            Row {
                path: file.clone(),
                file: name(file),
                probe: probe(file),
                ffmpeg: ffmpeg_samples(file),
                segue,
                truth: truth(file),
            }
        })
        .collect()
}

/// Prints the rows a rule covers and fails, with the whole table, if any row is unexplained.
pub(crate) fn assert_all_explained(what: &str, rows: &[Row]) {
    let header = format!(
        "{:<78} {:<8} {:<10} {:>6} {:>2} {:>9} {:>9} {:>8}  output rate / messages",
        "file", "format", "codec", "rate", "ch", "segue", "ffmpeg", "diff"
    );
    let mut mismatches = String::new();
    let mut covered = String::new();
    let mut exact = 0;
    for row in rows {
        match row.rule() {
            Some(Rule::Exact) => exact += 1,
            Some(rule) => writeln!(covered, "{rule:?}: {}", table_line(row)).unwrap(),
            None => writeln!(mismatches, "{}", table_line(row)).unwrap(),
        }
    }
    eprintln!(
        "{what}: {} files, {exact} exact, {} covered by a rule, {} mismatches",
        rows.len(),
        covered.lines().count(),
        mismatches.lines().count()
    );
    if !covered.is_empty() {
        eprintln!("covered by a documented rule:\n{covered}");
    }
    assert!(
        mismatches.is_empty(),
        "{what}: {} of {} files differ from ffmpeg's decode (samples per channel at the source \
         rate):\n{header}\n{mismatches}",
        mismatches.lines().count(),
        rows.len()
    );
}
