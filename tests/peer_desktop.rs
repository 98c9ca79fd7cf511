//! Desktop players against a real `segue serve`: VLC 3.0, mpv and GStreamer (`playbin3`, so
//! hlsdemux2/dashdemux2) render the HLS master playlist and the DASH MPD of a multi-segment
//! track to WAV, and each WAV holds the whole media timeline; Chromium plays the master
//! playlist natively in `<audio src>` (no MSE) to its `ended` event.
//!
//! The track has the default ladder (HE-AAC 64k, AAC-LC 128k and 256k) and three segments, the
//! case where VLC 3.0 used to start on the HE-AAC rung, move to AAC-LC after the first segment
//! and lose that whole segment (see src/manifest/mod.rs); the manifests now give it one AAC
//! profile per switching set. The expected count is the media timeline, the sum of the segment
//! durations: these players do not apply the fMP4 edit list, so encoder priming and padding
//! are in it. Per player:
//!
//! - mpv (FFmpeg's demuxers and AAC decoder) and GStreamer (avdec_aac, FFmpeg's decoder, from
//!   gstreamer1.0-libav): exactly the timeline.
//! - VLC decodes AAC with libfaad2 by default, which returns no samples for the first access
//!   unit a decoder instance is given (VLC logs "faad … decoded zero sample"): the timeline less
//!   1,024 samples per such warning ([`VLC_FAAD_SWALLOWED_SAMPLES`]). The warnings are counted
//!   from VLC's own log, so a second decoder instance (a profile switch) would show up too.
//!
//! A one-segment track (0.8 s) is played whole by all three too. Known client bug: GStreamer
//! 1.22's adaptivedemux2 (hlsdemux2, dashdemux2) fails a run at random when the whole stream
//! is downloaded before its output pad is exposed, which a loopback origin and a loaded
//! machine make likely (one segment: most runs; three: a few in a hundred). It logs "Can't
//! push EOS on non-exposed pad" at ERROR level, then "Fragment downloading has failed
//! consecutive times", with every request answered 200. Only a run whose log shows that race
//! is retried, up to [`GST_EARLY_EOS_ATTEMPTS`] times, and every run that completes must be
//! exact.
//!
//! Needs `vlc` (run as user `nobody` when the test runs as root: VLC refuses root), `mpv`,
//! `gstreamer1.0-tools`, `gstreamer1.0-plugins-{base,good}` (adaptivedemux2 is in -good in
//! Debian 12), `gstreamer1.0-libav`, and for
//! the Chromium case node, `npm ci` in tests/peers and `chromium`.

mod common;
#[path = "peers/support.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;

/// Three segments with the default segmenting (about 1 s, then 3.968 s, then the rest), so a
/// player that switches rendition after the first segment has two more to switch to.
const TRACK_SECONDS: f64 = 8.0;
/// One player run (VLC and GStreamer decode faster than real time; mpv's pcm output too).
const PLAYER_LIMIT: Duration = Duration::from_secs(120);
/// Samples one libfaad2 decoder instance swallows: its first AAC-LC access unit (1,024 samples
/// per channel), for which it outputs nothing.
const VLC_FAAD_SWALLOWED_SAMPLES: u64 = 1024;
/// Under one segment (the first segment is about 1 s): the one-segment case.
const ONE_SEGMENT_SECONDS: f64 = 0.8;
/// The Chromium case's own deadline in the node script (the track plays in real time).
const NATIVE_HLS_TIMEOUT_MS: u64 = 60_000;

/// Attempts at one manifest in GStreamer when adaptivedemux2 1.22 loses its early-EOS race
/// (see the module doc). Only that race is retried; every run that completes must be exact.
/// A one-segment run loses it about three times in four on a saturated 2-core machine, so
/// 30 attempts leave a false failure at under 1 in 5,000 (a run takes about 0.3 s).
const GST_EARLY_EOS_ATTEMPTS: usize = 30;
/// adaptivedemux2's ERROR-level log line for its early-EOS race (GST_DEBUG=adaptivedemux2:1).
const GST_EARLY_EOS_RACE: &str = "Can't push EOS on non-exposed pad";

/// A desktop player under test.
#[derive(Clone, Copy, Debug)]
enum Player {
    /// VLC 3.0 (`cvlc`), stream output transcoding to a WAV file.
    Vlc,
    /// mpv, its pcm audio output writing a WAV file.
    Mpv,
    /// GStreamer's playbin3, its audio sink a bin ending in wavenc.
    GStreamer,
}

/// What one player made of one manifest.
struct Rendered {
    /// Sample frames in the WAV the player wrote.
    frames: u64,
    /// The frames it should have written (the timeline, less what a named rule allows).
    expected: u64,
    /// The media segments it fetched, in order (`rendition-dir/N.m4s`).
    fetched: Vec<String>,
    /// Its exit status and log, when it failed.
    error: Option<String>,
    /// Whether its log shows GStreamer's early-EOS race ([`GST_EARLY_EOS_RACE`]).
    early_eos_race: bool,
}

impl Player {
    /// Fails the test unless the player (and for GStreamer the elements it needs) is installed.
    fn require(self) {
        match self {
            // Not `cvlc --version`: VLC refuses to start as root, even for that.
            Player::Vlc => require_program(
                "VLC",
                "sh",
                &["-c", "command -v cvlc"],
                "apt-get install vlc",
            ),
            Player::Mpv => require_program("mpv", "mpv", &["--version"], "apt-get install mpv"),
            Player::GStreamer => {
                require_program(
                    "GStreamer",
                    "gst-launch-1.0",
                    &["--version"],
                    "apt-get install gstreamer1.0-tools",
                );
                for (element, package) in [
                    ("hlsdemux2", "gstreamer1.0-plugins-good"),
                    ("dashdemux2", "gstreamer1.0-plugins-good"),
                    ("avdec_aac", "gstreamer1.0-libav"),
                    ("wavenc", "gstreamer1.0-plugins-good"),
                ] {
                    require_program(
                        &format!("GStreamer's {element}"),
                        "gst-inspect-1.0",
                        &["--exists", element],
                        &format!("apt-get install {package}"),
                    );
                }
            }
        }
    }

    /// The command that renders `url` to `wav` (`rate` Hz); `dir` is writable by it.
    fn command(self, url: &str, wav: &Path, rate: u32, dir: &Path) -> Command {
        match self {
            Player::Vlc => {
                // -vv: the faad warnings the expected count depends on are debug-level output.
                // --no-sout-all: one audio track, as a player plays (with several Adaptation
                // Sets the stream output would otherwise take every one).
                let mut cmd = as_non_root("cvlc", dir);
                cmd.args(["-vv", "--no-video", "--no-sout-all", "--play-and-exit", url])
                    .arg("--sout")
                    .arg(format!(
                        "#transcode{{acodec=s16l,channels=2,samplerate={rate}}}:std{{access=file,mux=wav,dst={}}}",
                        wav.display()
                    ));
                cmd
            }
            Player::Mpv => {
                let mut cmd = Command::new("mpv");
                cmd.args(["--no-config", "--really-quiet", "--no-video", "--ao=pcm"])
                    .arg(format!("--ao-pcm-file={}", wav.display()))
                    .args(["--ao-pcm-waveheader=yes", url]);
                cmd
            }
            Player::GStreamer => {
                let mut cmd = Command::new("gst-launch-1.0");
                // ERROR-level adaptivedemux2 output names the client race the test retries.
                cmd.env("GST_DEBUG", "adaptivedemux2:1")
                    .env("GST_DEBUG_NO_COLOR", "1")
                    .args(["-q", "playbin3"])
                    .arg(format!("uri={url}"))
                    .arg("video-sink=fakesink")
                    .arg(format!(
                        "audio-sink=audioconvert ! audio/x-raw,format=S16LE ! wavenc ! filesink location={} sync=false",
                        wav.display()
                    ));
                cmd
            }
        }
    }

    /// The frames expected from a run whose log is `log`: the timeline, except for VLC's faad
    /// rule (see the module doc).
    fn expected(self, timeline: u64, log: &str) -> u64 {
        match self {
            Player::Vlc => {
                let swallowed = log
                    .lines()
                    .filter(|l| l.contains("faad") && l.contains("decoded zero sample"))
                    .count() as u64;
                timeline.saturating_sub(swallowed * VLC_FAAD_SWALLOWED_SAMPLES)
            }
            Player::Mpv | Player::GStreamer => timeline,
        }
    }

    /// Renders `url` once to a WAV in `out`.
    fn render(self, url: &str, server: &Server, out: &PlayerDir, timeline: u64) -> Rendered {
        let wav = out.next_wav(&format!("{self:?}"));
        let mark = server.log().len();
        let rate = out.rate;
        let run = run_bounded(self.command(url, &wav, rate, &out.path), PLAYER_LIMIT);
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        let error = (!run.status.success()).then(|| {
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            format!(
                "exit {}: {}",
                run.status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        });
        Rendered {
            frames: wav_frames(&wav),
            expected: self.expected(timeline, &log),
            fetched: fetched_since(server, mark),
            early_eos_race: matches!(self, Player::GStreamer) && log.contains(GST_EARLY_EOS_RACE),
            error,
        }
    }
}

/// Each of `players` renders the HLS master playlist and the MPD of a generated track of
/// `seconds`; fails the test unless every rendering is whole. A GStreamer run that loses
/// adaptivedemux2's early-EOS race is retried ([`GST_EARLY_EOS_ATTEMPTS`]).
fn assert_played_whole(players: &[Player], seconds: f64) {
    for player in players {
        player.require();
    }
    let (library, server, timeline) = serve_track(seconds);
    let urls = server.track(&library.track_id);
    let out = PlayerDir::new(library.temp.record(&library.track_id).sample_rate);
    let mut failures = Vec::new();
    for &player in players {
        for (protocol, url) in [("HLS", &urls.hls), ("DASH", &urls.dash)] {
            let mut rendered = player.render(url, &server, &out, timeline);
            let mut attempt = 1;
            while attempt < GST_EARLY_EOS_ATTEMPTS && rendered.early_eos_race {
                eprintln!(
                    "{player:?} {protocol}: adaptivedemux2's early-EOS race (attempt {attempt}), retrying"
                );
                rendered = player.render(url, &server, &out, timeline);
                attempt += 1;
            }
            report(player, protocol, &rendered, timeline, &mut failures);
        }
    }
    assert!(
        failures.is_empty(),
        "{}\nsegue log (tail):\n{}",
        failures.join("\n"),
        server.log_tail(20)
    );
}

#[test]
fn vlc_decodes_hls_and_dash_to_the_whole_media_timeline() {
    assert_played_whole(&[Player::Vlc], TRACK_SECONDS);
}

#[test]
fn mpv_decodes_hls_and_dash_to_the_whole_media_timeline() {
    assert_played_whole(&[Player::Mpv], TRACK_SECONDS);
}

#[test]
fn gstreamer_playbin3_decodes_hls_and_dash_to_the_whole_media_timeline() {
    assert_played_whole(&[Player::GStreamer], TRACK_SECONDS);
}

#[test]
fn desktop_players_decode_a_one_segment_track_whole() {
    assert_played_whole(
        &[Player::Vlc, Player::Mpv, Player::GStreamer],
        ONE_SEGMENT_SECONDS,
    );
}

#[test]
fn chromium_plays_the_master_playlist_natively_to_the_end() {
    require_browser_peers();
    let (library, server, timeline) = serve_track(TRACK_SECONDS);
    let rate = library.temp.record(&library.track_id).sample_rate;
    let urls = server.track(&library.track_id);
    let timeout = NATIVE_HLS_TIMEOUT_MS.to_string();
    let flags = [("--src", urls.hls.as_str()), ("--timeout-ms", &timeout)];
    let result = run_node_json("native_hls.mjs", &flags, PLAYER_LIMIT);
    let timeline_s = timeline as f64 / f64::from(rate);
    let duration = result["duration"].as_f64().unwrap_or(f64::NAN);
    let ended_at = result["ended_at"].as_f64().unwrap_or(f64::NAN);
    eprintln!(
        "Chromium {} native HLS: ended={} at {ended_at} s, duration {duration} s (timeline {timeline_s:.6} s), \
         played {} s of wall time, errors {}",
        result["chromium"], result["ended"], result["wall_s"], result["errors"]
    );
    let mut failures = Vec::new();
    if result["ended"] != true {
        failures.push(format!("no `ended` event: {}", result["failures"]));
    }
    if result["errors"].as_array().is_none_or(|e| !e.is_empty()) {
        failures.push(format!("errors: {}", result["errors"]));
    }
    // Chromium reports durations from the playlist's EXTINF values (microsecond decimals) and
    // positions in microseconds: a millisecond is far below one AAC frame (21 ms at 48 kHz).
    if (duration - timeline_s).abs() > 0.001 {
        failures.push(format!(
            "duration {duration} s, not the media timeline {timeline_s:.6} s"
        ));
    }
    if (ended_at - duration).abs() > 0.001 {
        failures.push(format!(
            "ended at {ended_at} s, not at the duration {duration} s"
        ));
    }
    assert!(
        failures.is_empty(),
        "Chromium native HLS of {}:\n{}\nsegue log (tail):\n{}",
        urls.hls,
        failures.join("\n"),
        server.log_tail(20)
    );
}

/// Generates a track of `seconds` and serves it; returns it, the server and its media timeline
/// in samples, after checking it is the case the test is about: the default ladder's two AAC
/// profiles, and three or more segments unless it is the one-segment case.
fn serve_track(seconds: f64) -> (Library, Server, u64) {
    let library = Library::generated(seconds);
    let record = library.temp.record(&library.track_id);
    let profiles: std::collections::BTreeSet<&str> =
        record.renditions.iter().map(|r| r.codec.as_str()).collect();
    let segments = record.segment_durations.len();
    assert!(
        profiles.len() >= 2 && (segments >= 3 || seconds < 1.0 && segments == 1),
        "{seconds} s with the default ladder: {profiles:?}, segments {:?}",
        record.segment_durations
    );
    let timeline = record.segment_durations.iter().sum();
    let server = Server::start(&library.root(), &[]);
    (library, server, timeline)
}

/// Checks one rendering against its expected frames and logs it beside the timeline.
fn report(
    player: Player,
    protocol: &str,
    rendered: &Rendered,
    timeline: u64,
    failures: &mut Vec<String>,
) {
    let expected = rendered.expected;
    eprintln!(
        "{player:?} {protocol}: {} samples (timeline {timeline}, expected {expected}); fetched {}",
        rendered.frames,
        rendered.fetched.join(" ")
    );
    if rendered.frames != expected {
        failures.push(format!(
            "{player:?} {protocol}: {} samples, expected {expected} (timeline {timeline}: {} missing); fetched {}",
            rendered.frames,
            i128::from(timeline) - i128::from(rendered.frames),
            rendered.fetched.join(" ")
        ));
    }
    if let Some(error) = &rendered.error {
        failures.push(format!("{player:?} {protocol}: {error}"));
    }
}

/// A temp dir the players write into (world-writable: VLC runs as `nobody` under root), and
/// the track's sample rate.
struct PlayerDir {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    rate: u32,
    runs: std::cell::Cell<usize>,
}

impl PlayerDir {
    fn new(rate: u32) -> PlayerDir {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod temp dir");
        let path = dir.path().to_path_buf();
        PlayerDir {
            _dir: dir,
            path,
            rate,
            runs: std::cell::Cell::new(0),
        }
    }

    /// A fresh WAV path for one run of `player`.
    fn next_wav(&self, player: &str) -> std::path::PathBuf {
        self.runs.set(self.runs.get() + 1);
        self.path.join(format!("{player}-{}.wav", self.runs.get()))
    }
}

/// `program` as a command with HOME at `home`, run as user `nobody` when the test runs as root
/// (VLC refuses to run as root), as the current user otherwise.
fn as_non_root(program: &str, home: &Path) -> Command {
    if rustix::process::geteuid().is_root() {
        // runuser sets HOME to nobody's (/nonexistent); env sets it back to a writable dir.
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "nobody", "--", "env"])
            .arg(format!("HOME={}", home.display()))
            .arg(program);
        cmd
    } else {
        let mut cmd = Command::new(program);
        cmd.env("HOME", home);
        cmd
    }
}

/// The media segments requested from the server since its log had `mark` lines, as
/// `rendition-dir/N.m4s` (the hash dropped from the directory name).
fn fetched_since(server: &Server, mark: usize) -> Vec<String> {
    server.log()[mark..]
        .iter()
        .filter_map(|l| {
            let uri = l.split("uri=").nth(1)?.split_whitespace().next()?;
            let mut parts = uri.rsplit('/');
            let (file, dir) = (parts.next()?, parts.next()?);
            let dir = dir.rsplit_once('.').map_or(dir, |(name, _hash)| name);
            file.ends_with(".m4s").then(|| format!("{dir}/{file}"))
        })
        .collect()
}

/// The number of sample frames in a WAV file: the data chunk's bytes (as many as are there,
/// whatever its size field says) over the block alignment of its `fmt ` chunk. 0 if there is
/// no file (the failure message then says 0 samples).
fn wav_frames(path: &Path) -> u64 {
    let Ok(bytes) = std::fs::read(path) else {
        return 0;
    };
    assert!(
        bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
        "{} is not a WAV file",
        path.display()
    );
    let mut at = 12;
    let mut block_align = 0u64;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = at + 8;
        if id == b"fmt " && body + 14 <= bytes.len() {
            block_align = u64::from(u16::from_le_bytes([bytes[body + 12], bytes[body + 13]]));
        } else if id == b"data" {
            assert!(block_align > 0, "{}: data before fmt", path.display());
            let len = (bytes.len() - body).min(size) as u64;
            return len / block_align;
        }
        at = body + size + (size & 1);
    }
    panic!("{}: no data chunk", path.display());
}
