//! Real players' CMCD (CTA-5004) against a real `segue serve`: hls.js with `cmcd: {}` and
//! dash.js with `streaming.cmcd.enabled` (both in query mode), and shaka-player in header mode
//! (`CMCD-*` request headers, through a CORS preflight), play a generated track in Debian's
//! headless Chromium (`tests/peers/cmcd_players.mjs`); `/metrics` then counts every CMCD
//! request they sent as valid under its transmission, one session per player, and their
//! buffer-length and throughput observations.
//! Needs node, `npm ci` in tests/peers and the `chromium` package (`.ci/run` installs them).

mod common;
#[path = "peers/support.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::*;

/// Long enough for 2 s of play with segments left to fetch (several 4 s segments).
const TRACK_SECONDS: f64 = 10.0;
/// How far each player must play.
const PLAY_SECONDS: &str = "2";
/// Each player's own deadline inside the node script, in milliseconds.
const CASE_TIMEOUT_MS: &str = "20000";
/// The whole node run (three cases, browser start and stop).
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// The value of the sample `series` (exact name and labels) in a metrics exposition.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The string value of `key` in a CMCD payload (`key="value"`), read independently of the
/// server's parser (players write no escapes in the keys read here).
fn string_key<'a>(payload: &'a str, key: &str) -> Option<&'a str> {
    let at = payload
        .split(',')
        .find_map(|pair| pair.strip_prefix(&format!("{key}=\"")))?;
    at.strip_suffix('"')
}

/// Whether a CMCD payload carries the integer key `key`.
fn has_integer(payload: &str, key: &str) -> bool {
    payload.split(',').any(|pair| {
        pair.strip_prefix(&format!("{key}="))
            .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
    })
}

#[test]
fn hls_js_dash_js_and_shaka_cmcd_is_counted_by_the_origin() {
    require_browser_peers();
    let library = Library::generated(TRACK_SECONDS);
    let server = Server::start(&library.root(), &[]);
    let track = server.track(&library.track_id);
    let summary = run_node_json(
        "cmcd_players.mjs",
        &[
            ("--hls", &track.hls),
            ("--dash", &track.dash),
            ("--play-s", PLAY_SECONDS),
            ("--case-timeout-ms", CASE_TIMEOUT_MS),
        ],
        RUN_LIMIT,
    );
    let cases = summary["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 3, "{summary}");
    let mut sids = BTreeSet::new();
    let (mut by_query, mut by_headers, mut with_bl, mut with_mtp) = (0.0, 0.0, 0.0, 0.0);
    for case in cases {
        let player = case["player"].as_str().unwrap_or_default();
        assert_eq!(case["errors"], serde_json::json!([]), "{player}: {case}");
        let played = case["currentTime"].as_f64().unwrap_or(0.0);
        assert!(played >= 2.0, "{player} played {played} s: {case}");
        let requests = case["requests"].as_array().expect("requests");
        let mut player_sids = BTreeSet::new();
        for request in requests {
            // Only requests the server answered were surely counted by it.
            let (Some(payload), Some(200 | 206)) =
                (request["cmcd"].as_str(), request["status"].as_u64())
            else {
                continue;
            };
            let wanted = if player == "shaka" { "header" } else { "query" };
            assert_eq!(request["transmission"], wanted, "{player}: {request}");
            if player == "shaka" {
                by_headers += 1.0;
            } else {
                by_query += 1.0;
            }
            with_bl += f64::from(u8::from(has_integer(payload, "bl")));
            with_mtp += f64::from(u8::from(has_integer(payload, "mtp")));
            if let Some(sid) = string_key(payload, "sid") {
                player_sids.insert(sid.to_string());
            }
        }
        assert_eq!(player_sids.len(), 1, "{player}: one session id: {case}");
        sids.extend(player_sids);
    }
    assert_eq!(sids.len(), 3, "a session per player: {sids:?}");
    assert!(by_headers >= 1.0, "shaka sent no CMCD header: {summary}");
    assert!(with_bl >= 1.0, "no request carried bl: {summary}");
    let resp = http_get(&server.url("/metrics"), &[]);
    let text = resp.text();
    for (transmission, answered) in [("query", by_query), ("headers", by_headers)] {
        let series = |outcome: &str| {
            format!(
                r#"segue_cmcd_requests_total{{transmission="{transmission}",outcome="{outcome}"}}"#
            )
        };
        assert!(
            metric(&text, &series("valid")) >= answered,
            "{answered} answered by {transmission}:\n{text}"
        );
        assert_eq!(metric(&text, &series("invalid")), 0.0, "{text}");
    }
    assert_eq!(
        metric(&text, "segue_cmcd_sessions"),
        sids.len() as f64,
        "{text}"
    );
    let bl = metric(&text, "segue_cmcd_buffer_length_ms_count");
    assert!(bl >= with_bl, "{with_bl} requests with bl:\n{text}");
    let mtp = metric(&text, "segue_cmcd_throughput_kbps_count");
    assert!(mtp >= with_mtp, "{with_mtp} requests with mtp:\n{text}");
    // A `nor` the players send names a file of the track: never refused.
    let refused = r#"segue_cmcd_warms_total{outcome="refused"}"#;
    assert_eq!(metric(&text, refused), 0.0, "{text}");
    drop(server);
}
