//! REDbot (the HTTP linter, pinned in tests/peers/requirements-redbot.txt) against a real
//! `segue serve`: a media segment, a media playlist, the master playlist and the MPD each get no
//! BAD note, and REDbot's own subrequests confirm partial content (`RANGE_CORRECT`) and
//! conditional requests (`INM_304`, and `IMS_304` when the response has a Last-Modified).
//!
//! REDbot runs as its CLI with HAR output (`python3 -m redbot.cli -o har URL`), whose entries
//! carry every note as `{note_id, level, category, summary, subnotes}`.

mod common;
#[path = "peers/support.rs"]
mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

const TRACK_SECONDS: f64 = 6.0;
/// One REDbot run (a request and its few subrequests, all on loopback).
const REDBOT_LIMIT: Duration = Duration::from_secs(60);

/// A REDbot note, flattened out of the HAR (subnotes included).
#[derive(Debug)]
struct Note {
    level: String,
    id: String,
    summary: String,
}

/// Runs REDbot on `url`; returns the response's headers (names lowercased) and every note.
fn redbot(url: &str) -> (Vec<(String, String)>, Vec<Note>) {
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "redbot.cli", "-o", "har", url]);
    let out = run_bounded(cmd, REDBOT_LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "redbot {url} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let har: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("redbot {url}: output is not HAR JSON ({e}):\n{stdout}"));
    if let Some(err) = har["log"]["_red_error"].as_str() {
        panic!("redbot {url} could not check it: {err}");
    }
    let entry = &har["log"]["entries"][0];
    assert_eq!(
        entry["response"]["status"], 200,
        "redbot {url}: main response status\n{stdout}"
    );
    let headers = entry["response"]["headers"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
                    (s(&h["name"]).to_ascii_lowercase(), s(&h["value"]))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut notes = Vec::new();
    collect_notes(&entry["_red_messages"], &mut notes);
    assert!(!notes.is_empty(), "redbot {url} gave no notes:\n{stdout}");
    (headers, notes)
}

fn collect_notes(list: &serde_json::Value, into: &mut Vec<Note>) {
    for n in list.as_array().into_iter().flatten() {
        let s = |k: &str| n[k].as_str().unwrap_or_default().to_string();
        into.push(Note {
            level: s("level"),
            id: s("note_id"),
            summary: s("summary"),
        });
        collect_notes(&n["subnotes"], into);
    }
}

#[test]
fn redbot_finds_no_bad_note_and_confirms_range_and_304_on_media_and_manifests() {
    require_program(
        "REDbot (python3 -m redbot.cli)",
        "python3",
        &["-c", "import redbot.cli"],
        "python3 -m pip install -r tests/peers/requirements-redbot.txt",
    );
    let library = Library::generated(TRACK_SECONDS);
    let server = Server::start(&library.root(), &[]);
    let track = server.track(&library.track_id);
    let playlist = &track.playlists[0];
    let media = http_get(playlist, &[]);
    assert_eq!(media.status, 200, "GET {playlist}");
    let segment = media
        .text()
        .lines()
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|uri| resolve(playlist, uri))
        .unwrap_or_else(|| panic!("no segment in {playlist}:\n{}", media.text()));

    let mut problems = Vec::new();
    for (what, url) in [
        ("media segment", &segment),
        ("media playlist", playlist),
        ("master playlist", &track.hls),
        ("MPD", &track.dash),
    ] {
        let (headers, notes) = redbot(url);
        let has = |id: &str| notes.iter().any(|n| n.id == id);
        let mut missing = Vec::new();
        for bad in notes.iter().filter(|n| n.level == "BAD") {
            missing.push(format!("BAD {}: {}", bad.id, bad.summary));
        }
        let mut required = vec!["RANGE_CORRECT", "INM_304"];
        if headers.iter().any(|(n, _)| n == "last-modified") {
            required.push("IMS_304");
        }
        for id in required {
            if !has(id) {
                missing.push(format!("no {id} note"));
            }
        }
        eprintln!("{what} {url}: {} notes", notes.len());
        if !missing.is_empty() {
            let all: Vec<String> = notes
                .iter()
                .map(|n| format!("  {} {}: {}", n.level, n.id, n.summary))
                .collect();
            problems.push(format!(
                "{what} {url}: {}\n REDbot's notes:\n{}",
                missing.join("; "),
                all.join("\n")
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
