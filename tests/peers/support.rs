//! Shared by the real-peer tests (`tests/peer_*.rs`): a generated library, the `segue serve`
//! process under test (`common::ServeProcess`, stopped on drop), a minimal HTTP/1.0 client for 127.0.0.1, bounded child
//! processes, and the check that a peer tool is installed.
//!
//! Included with `#[path = "peers/support.rs"] mod support;` after `mod common;`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

pub use crate::common::RawResponse as Response;
use crate::common::{TempLibrary, ingest_one, make_input};

/// The peers' own files (page, node script, nginx templates).
pub fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

/// Fails the test with a message naming the `.ci/run` step that installs `what`.
pub fn missing_tool(what: &str, ci_step: &str) -> ! {
    panic!(
        "{what} is not installed: this real-peer test needs it. `.ci/run` installs it \
         (step: {ci_step}); run `bash .ci/run` or that step by hand."
    )
}

/// Panics via [`missing_tool`] (naming `what`) unless `program` runs with the `probe` args
/// (`--version`, or an import) and exits 0.
pub fn require_program(what: &str, program: &str, probe: &[&str], ci_step: &str) {
    let ok = Command::new(program)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        missing_tool(what, ci_step);
    }
}

/// Panics via [`missing_tool`] unless the browser peers are installed: node, `npm ci` in
/// tests/peers (playwright-core and the players) and Debian's chromium.
pub fn require_browser_peers() {
    require_program(
        "node",
        "node",
        &["--version"],
        "Node.js (CI image), then `npm ci` in tests/peers",
    );
    if !peers_dir()
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        missing_tool(
            "tests/peers/node_modules (hls.js, dash.js, shaka-player, playwright-core)",
            "`npm ci` in tests/peers",
        );
    }
    require_program(
        "Debian's chromium",
        "/usr/bin/chromium",
        &["--version"],
        "apt-get install chromium",
    );
}

/// A temp library holding one generated track of `seconds` (48 kHz stereo FLAC in, the default
/// ladder out).
pub struct Library {
    /// Keeps the directory alive; removed on drop.
    pub temp: TempLibrary,
    /// The ingested track's id.
    pub track_id: String,
}

impl Library {
    /// Generates the input with ffmpeg and ingests it with the `segue` binary.
    pub fn generated(seconds: f64) -> Library {
        let temp = TempLibrary::new();
        let input = make_input(
            &temp.inputs(),
            "peer.flac",
            48_000,
            seconds,
            2,
            &["-c:a", "flac"],
        );
        let track_id = ingest_one(&temp.library(), &input);
        Library { temp, track_id }
    }

    /// The library root.
    pub fn root(&self) -> PathBuf {
        self.temp.library()
    }

    /// The track's directory (what segue serves under `/media/{id}/`).
    pub fn track_dir(&self) -> PathBuf {
        self.root().join("tracks").join(&self.track_id)
    }
}

/// The `segue serve` process under test: one helper for every test binary.
pub use crate::common::ServeProcess as Server;

/// What the peer tests ask of the server beyond starting it.
pub trait ServerExt {
    /// The track's URLs, from `GET /api/tracks`.
    fn track(&self, id: &str) -> TrackUrls;
}

impl ServerExt for Server {
    fn track(&self, id: &str) -> TrackUrls {
        let resp = http_get(&self.url("/api/tracks"), &[]);
        assert_eq!(resp.status, 200, "GET /api/tracks: {}", resp.text());
        let json: serde_json::Value = serde_json::from_slice(&resp.body)
            .unwrap_or_else(|e| panic!("/api/tracks is not JSON ({e}): {}", resp.text()));
        let track = json["tracks"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["id"] == id))
            .unwrap_or_else(|| panic!("track {id} not in /api/tracks: {json}"));
        TrackUrls::from_api(self, track)
    }
}

/// Absolute URLs of one track, as `/api/tracks` gives them.
#[derive(Debug, Clone)]
pub struct TrackUrls {
    /// HLS master playlist.
    pub hls: String,
    /// DASH MPD.
    pub dash: String,
    /// Rendition directory (as in segment URLs) of the lowest bitrate.
    pub low_dir: String,
    /// Rendition directory of the highest bitrate.
    pub high_dir: String,
    /// Every rendition's init segment URL, lowest bitrate first.
    pub inits: Vec<String>,
    /// Every rendition's HLS media playlist URL, lowest bitrate first.
    pub playlists: Vec<String>,
}

impl TrackUrls {
    fn from_api(server: &Server, track: &serde_json::Value) -> TrackUrls {
        let url = |v: &serde_json::Value, what: &str| {
            server.url(
                v.as_str()
                    .unwrap_or_else(|| panic!("track has no {what} URL: {track}")),
            )
        };
        let mut renditions: Vec<(u64, String, String, String)> = track["renditions"]
            .as_array()
            .unwrap_or_else(|| panic!("track has no renditions: {track}"))
            .iter()
            .map(|r| {
                let init = url(&r["init"], "rendition init");
                // …/media/{id}/{rendition-dir}/init.mp4
                let dir = init.rsplit('/').nth(1).unwrap_or_default().to_string();
                let playlist = url(&r["playlist"], "rendition playlist");
                (r["bitrate"].as_u64().unwrap_or(0), dir, init, playlist)
            })
            .collect();
        renditions.sort();
        assert!(renditions.len() >= 2, "need two renditions: {track}");
        TrackUrls {
            hls: url(&track["hls"], "hls"),
            dash: url(&track["dash"], "dash"),
            low_dir: renditions[0].1.clone(),
            high_dir: renditions[renditions.len() - 1].1.clone(),
            inits: renditions.iter().map(|r| r.2.clone()).collect(),
            playlists: renditions.into_iter().map(|r| r.3).collect(),
        }
    }
}

/// `uri` from a playlist at `base`, made absolute (RFC 3986 5.2, for the relative paths and
/// absolute paths playlists use).
pub fn resolve(base: &str, uri: &str) -> String {
    if uri.starts_with("http://") {
        uri.to_string()
    } else if let Some(path) = uri.strip_prefix('/') {
        let origin_end = base[7..].find('/').map_or(base.len(), |i| i + 7);
        format!("{}/{path}", &base[..origin_end])
    } else {
        format!("{}/{uri}", &base[..base.rfind('/').unwrap_or(base.len())])
    }
}

/// `GET url` over HTTP/1.0 (`url` must be `http://127.0.0.1:PORT/…`), 10 s timeouts.
pub fn http_get(url: &str, headers: &[(&str, &str)]) -> Response {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http URL: {url}"));
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    assert!(
        authority.starts_with("127.0.0.1:"),
        "peer tests talk to 127.0.0.1 only: {url}"
    );
    let path = if path.is_empty() { "/" } else { path };
    let mut stream = TcpStream::connect(authority).unwrap_or_else(|e| panic!("connect {url}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    stream.set_write_timeout(Some(Duration::from_secs(10))).ok();
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("read {url}: {e}"));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in response to {url}"));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line from {url}: {head}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// A port on 127.0.0.1 that was free a moment ago, for peers that cannot bind port 0 and
/// report it (nginx). Callers retry if it was taken in between.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Runs the node script `script` (in tests/peers) with `flags` (`--name value` pairs), bounded
/// by `limit`: it must exit 0 and print one JSON document on stdout, which is returned.
pub fn run_node_json(script: &str, flags: &[(&str, &str)], limit: Duration) -> serde_json::Value {
    let mut node = Command::new("node");
    node.current_dir(peers_dir()).arg(script);
    for (name, value) in flags {
        node.args([name, value]);
    }
    let out = run_bounded(node, limit);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stderr}",
        out.status
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}):\n{}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Runs `cmd` to completion with captured output; after `limit` kills its whole process group
/// (a browser or worker it started too) and fails the test.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let err_reader = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            // The process group our child leads (process_group(0) above).
            let _ = kill_process_group(Pid::from_child(&child), Signal::KILL);
            let _ = child.wait();
            let stderr = err_reader.join().unwrap_or_default();
            panic!(
                "{what} did not finish within {limit:?}; killed. stderr:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// nginx as a peer (the CDN stand-in).
#[path = "nginx.rs"]
pub mod nginx;
