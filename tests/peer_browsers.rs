//! Real players against a real `segue serve`: hls.js (HLS), dash.js (DASH) and shaka-player
//! (HLS and DASH) in Debian's headless Chromium, driven by playwright-core
//! (`tests/peers/players.mjs`), from a page on another origin so that CORS is exercised.
//!
//! For each player and protocol: playback passes 3 s with no player, media or page error, and a
//! forced switch to the lowest then the highest rendition mid-track plays on: the new
//! rendition's segments are fetched, the playhead keeps moving, and no `waiting` lasts over 1 s.
//! The same holds with `--signing-key` for the signed master playlist and MPD URLs the catalog
//! API hands out, with no change to the players (the token in the path reaches every playlist
//! and segment by relative resolution); and with that token stripped or forged every request is
//! refused with a 403 the cross-origin player can read, and nothing plays.
//! Needs node, `npm ci` in tests/peers and the `chromium` package (`.ci/run` installs them).

mod common;
#[path = "peers/support.rs"]
mod support;

use std::time::{Duration, SystemTime};

use segue::server::signing::Signer;
use support::*;

/// Long enough for a start, two switches and the play after each, with segments left to fetch.
const TRACK_SECONDS: f64 = 20.0;
/// The refused cases never get a byte of media; any track will do.
const REFUSED_TRACK_SECONDS: f64 = 4.0;
/// Each player case's own deadline inside the node script.
const CASE_TIMEOUT_MS: u64 = 30_000;
/// Each refused case's deadline: a player gives up after its retries (a few seconds).
const REFUSED_CASE_TIMEOUT_MS: u64 = 20_000;
/// The whole node run (four cases, browser start and stop).
const RUN_LIMIT: Duration = Duration::from_secs(180);
/// The server's `--signing-key` in the signed cases.
const SIGNING_KEY: &str = "peer-browsers-signing-key-0123456789";
const CASES: [(&str, &str); 4] = [
    ("hls.js", "hls"),
    ("dash.js", "dash"),
    ("shaka", "hls"),
    ("shaka", "dash"),
];

#[test]
fn browser_players_play_across_origins_and_switch_renditions_without_stall() {
    let (library, server) = serve_generated(TRACK_SECONDS, &[]);
    let track = server.track(&library.track_id);
    let summary = run_players(&track, CASE_TIMEOUT_MS);
    assert_every_case_played(&server, &summary);
}

#[test]
fn browser_players_play_the_signed_urls_of_the_api_unchanged() {
    let (library, server) = serve_generated(TRACK_SECONDS, &["--signing-key", SIGNING_KEY]);
    let track = signed_track(&server, &library.track_id);
    let summary = run_players(&track, CASE_TIMEOUT_MS);
    assert_every_case_played(&server, &summary);
}

#[test]
fn browser_players_get_403_for_a_signed_stream_with_its_token_stripped_or_forged() {
    let (library, server) = serve_generated(REFUSED_TRACK_SECONDS, &["--signing-key", SIGNING_KEY]);
    let signed = signed_track(&server, &library.track_id);
    let scope = format!("/media/{}/", library.track_id);
    let forger = Signer::new(
        Some(b"not-the-operator's-key".to_vec()),
        Duration::from_secs(3600),
    );
    let forged = forger.token(&scope, SystemTime::now()).expect("a key");
    let mut failed = Vec::new();
    for (how, token) in [("stripped", None), ("forged", Some(forged.as_str()))] {
        let track = TrackUrls {
            hls: with_token(&signed.hls, token),
            dash: with_token(&signed.dash, token),
            ..signed.clone()
        };
        let summary = run_players(&track, REFUSED_CASE_TIMEOUT_MS);
        for (player, protocol, case) in cases_of(&summary) {
            let problems = refusal_problems(case);
            let statuses: Vec<String> = requests_of(case)
                .iter()
                .map(|q| q["status"].to_string())
                .collect();
            let said = player_errors(case).next().map_or("nothing".into(), |e| {
                format!("{}: {}", e["source"], e["detail"])
            });
            eprintln!(
                "{player} {protocol}, token {how}: refused={} in {} s, statuses [{}], player said {said:.160}",
                problems.is_empty(),
                case["seconds"],
                statuses.join(", "),
            );
            if !problems.is_empty() {
                failed.push(format!(
                    "{player} {protocol}, token {how}: {}\n  errors: {}\n  requests: {}",
                    problems.join("; "),
                    case["errors"],
                    case["requests"]
                ));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "players were not refused with a readable 403 by {}:\n{}\nsegue log (tail):\n{}",
        server.origin,
        failed.join("\n"),
        server.log_tail(40)
    );
}

/// Checks the browser peers, generates a track of `seconds` and serves it with `flags`.
fn serve_generated(seconds: f64, flags: &[&str]) -> (Library, Server) {
    require_browser_peers();
    let library = Library::generated(seconds);
    let server = Server::start(&library.root(), flags);
    (library, server)
}

/// The track's URLs with the hls and dash entry points from `GET /api/tracks/{id}`, checked to
/// be signed (`/t/TOKEN/media/…`).
fn signed_track(server: &Server, id: &str) -> TrackUrls {
    let listed = server.track(id);
    let resp = http_get(&server.url(&format!("/api/tracks/{id}")), &[]);
    assert_eq!(resp.status, 200, "GET /api/tracks/{id}: {}", resp.text());
    let json: serde_json::Value = serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("/api/tracks/{id} is not JSON ({e}): {}", resp.text()));
    let entry = |key: &str| {
        let url = server.url(
            json[key]
                .as_str()
                .unwrap_or_else(|| panic!("no {key} URL: {json}")),
        );
        assert!(
            url.starts_with(&server.url("/t/")),
            "the API's {key} URL is not signed: {url}"
        );
        url
    };
    TrackUrls {
        hls: entry("hls"),
        dash: entry("dash"),
        ..listed
    }
}

/// `url` (`…/t/TOKEN/media/…`) with its token replaced by `token`, or removed.
fn with_token(url: &str, token: Option<&str>) -> String {
    let at = url
        .find("/t/")
        .unwrap_or_else(|| panic!("not signed: {url}"));
    let rest = &url[at + 3..];
    let media = &rest[rest
        .find('/')
        .unwrap_or_else(|| panic!("no path after the token: {url}"))..];
    match token {
        Some(token) => format!("{}/t/{token}{media}", &url[..at]),
        None => format!("{}{media}", &url[..at]),
    }
}

/// Runs players.mjs on every case of [`CASES`] with `track`'s entry points; returns its JSON
/// summary.
fn run_players(track: &TrackUrls, case_timeout_ms: u64) -> serde_json::Value {
    let cases: Vec<String> = CASES
        .iter()
        .map(|(p, proto)| format!("{p}:{proto}"))
        .collect();
    let (hls_low, cases, timeout) = (
        hls_low_dir(track),
        cases.join(","),
        case_timeout_ms.to_string(),
    );
    let flags = [
        ("--hls", track.hls.as_str()),
        ("--dash", &track.dash),
        ("--low", &track.low_dir),
        ("--high", &track.high_dir),
        ("--hls-low", &hls_low),
        ("--cases", &cases),
        ("--case-timeout-ms", &timeout),
    ];
    run_node_json("players.mjs", &flags, RUN_LIMIT)
}

/// The rendition directory of the master playlist's first variant (its lowest bitrate): the
/// master lists the AAC-LC switching set only (src/manifest/mod.rs), so its lowest rendition
/// is not the track's lowest (HE-AAC, in the MPD). The track's lowest when the master cannot
/// be read (the refused cases, where nothing plays).
fn hls_low_dir(track: &TrackUrls) -> String {
    let resp = http_get(&track.hls, &[]);
    if resp.status != 200 {
        return track.low_dir.clone();
    }
    let text = resp.text();
    let first = text
        .lines()
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_else(|| panic!("no variant in the master playlist {}:\n{text}", track.hls));
    first.split('/').next().unwrap_or_default().to_string()
}

/// Each of [`CASES`] with its result in `summary`.
fn cases_of(
    summary: &serde_json::Value,
) -> impl Iterator<Item = (&'static str, &'static str, &serde_json::Value)> {
    let results = summary["cases"].as_array().expect("cases in summary");
    CASES.into_iter().map(move |(player, protocol)| {
        let case = results
            .iter()
            .find(|c| c["player"] == player && c["protocol"] == protocol)
            .unwrap_or_else(|| panic!("no result for {player} {protocol}: {summary}"));
        (player, protocol, case)
    })
}

/// Fails the test unless every case of `summary` played and switched (players.mjs's `ok`).
fn assert_every_case_played(server: &Server, summary: &serde_json::Value) {
    let mut failed = Vec::new();
    for (player, protocol, case) in cases_of(summary) {
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

/// Why a case given a bad token was not refused as it should be: nothing played, every request
/// to segue was answered 403 with the CORS header (so the player can read the status, not a
/// bare network error), and the player itself reported the failure.
fn refusal_problems(case: &serde_json::Value) -> Vec<String> {
    let mut problems = Vec::new();
    if case["final_time_s"].as_f64() != Some(0.0) {
        problems.push(format!("the playhead moved to {} s", case["final_time_s"]));
    }
    let requests = requests_of(case);
    if requests.is_empty() {
        problems.push("no request reached segue".into());
    }
    for q in requests {
        if q["status"] != 403 || q["acao"].is_null() {
            problems.push(format!(
                "{} got status {} (Access-Control-Allow-Origin {}, failure {}), not a readable 403",
                q["url"], q["status"], q["acao"], q["failed"]
            ));
        }
    }
    if player_errors(case).next().is_none() {
        problems.push("the player reported no error".into());
    }
    problems
}

/// The requests to segue a case made, as players.mjs recorded them.
fn requests_of(case: &serde_json::Value) -> &[serde_json::Value] {
    case["requests"].as_array().map_or(&[], Vec::as_slice)
}

/// The errors the player or page reported itself (not Chromium's console lines).
fn player_errors(case: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
    case["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["source"] != "console")
}
