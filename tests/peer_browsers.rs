//! Real players against a real `segue serve`: hls.js (HLS), dash.js (DASH) and shaka-player
//! (HLS and DASH) in Debian's headless Chromium, driven by playwright-core
//! (`tests/peers/players.mjs`), from a page on another origin so that CORS is exercised.
//!
//! For each player and protocol: playback passes 3 s with no player, media or page error, and a
//! forced switch to the lowest then the highest rendition mid-track plays on: the new
//! rendition's segments are fetched, the playhead keeps moving, and no `waiting` lasts over 1 s.
//! Needs node, `npm ci` in tests/peers and the `chromium` package (`.ci/run` installs them).

mod common;
#[path = "peers/support.rs"]
mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

/// Long enough for a start, two switches and the play after each, with segments left to fetch.
const TRACK_SECONDS: f64 = 20.0;
/// Each player case's own deadline inside the node script.
const CASE_TIMEOUT_MS: u64 = 30_000;
/// The whole node run (four cases, browser start and stop).
const RUN_LIMIT: Duration = Duration::from_secs(180);
const CASES: [(&str, &str); 4] = [
    ("hls.js", "hls"),
    ("dash.js", "dash"),
    ("shaka", "hls"),
    ("shaka", "dash"),
];

#[test]
fn browser_players_play_across_origins_and_switch_renditions_without_stall() {
    require_browser_peers();
    let library = Library::generated(TRACK_SECONDS);
    let server = Server::start(&library.root(), &[]);
    let track = server.track(&library.track_id);

    let cases: Vec<String> = CASES
        .iter()
        .map(|(p, proto)| format!("{p}:{proto}"))
        .collect();
    let mut node = Command::new("node");
    node.current_dir(peers_dir())
        .arg("players.mjs")
        .args(["--hls", &track.hls, "--dash", &track.dash])
        .args(["--low", &track.low_dir, "--high", &track.high_dir])
        .args(["--cases", &cases.join(",")])
        .args(["--case-timeout-ms", &CASE_TIMEOUT_MS.to_string()]);
    let out = run_bounded(node, RUN_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "players.mjs failed ({}):\n{stderr}",
        out.status
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "players.mjs printed no JSON summary ({e}):\n{}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });

    let results = summary["cases"].as_array().expect("cases in summary");
    let mut failed = Vec::new();
    for (player, protocol) in CASES {
        let case = results
            .iter()
            .find(|c| c["player"] == player && c["protocol"] == protocol)
            .unwrap_or_else(|| panic!("no result for {player} {protocol}: {summary}"));
        let switches: Vec<String> = case["switches"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                format!(
                    "{} ({} segments, longest stall {} ms)",
                    s["which"],
                    s["segments_fetched"].as_array().map_or(0, Vec::len),
                    s["longest_stall_ms"]
                )
            })
            .collect();
        eprintln!(
            "{player} {protocol}: ok={} in {} s, played to {} s, switched to {}; cors {}",
            case["ok"],
            case["seconds"],
            case["final_time_s"],
            switches.join(" then "),
            case["cors"]
        );
        if case["ok"] != true {
            failed.push(format!(
                "{player} {protocol}: {}\n  errors: {}\n  switches: {}\n  requests: {}",
                case["failures"], case["errors"], case["switches"], case["requests"]
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "players failed on {} (Chromium {}, page origin {}):\n{}\nsegue log (tail):\n{}",
        server.origin,
        summary["chromium"],
        summary["page_origin"],
        failed.join("\n"),
        server.log_tail(40)
    );
}
