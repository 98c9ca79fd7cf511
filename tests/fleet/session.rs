//! A control session across the fleet (`--bus redis://`): segue's page joins a session through
//! nginx and plays; a second page joins the same session directly on the OTHER origin and
//! follows it (same track, playing) before the kill; the first page's origin is then killed
//! with SIGKILL. The first page's control channel reconnects through nginx to the survivor by
//! itself and rejoins the same session, playback plays on to the end, and the second page saw
//! the same track playing throughout.
//!
//! Without a shared bus the second page, on another origin than the first, would join an empty
//! session of its own until the first page rejoined on its origin, and this test would fail.

use std::time::Duration;

use serde_json::Value;

use crate::common::redis::RedisServer;
use crate::fixture::Fleet;
use crate::peers::{http_get, require_browser_peers, run_node_json};

/// As for the page in `failover`: a few seconds before the kill, more segments after it than the page's
/// buffer goal holds.
const TRACK_SECONDS: f64 = 34.0;
/// The origins' shared SEGUE_BUS_KEY.
const BUS_KEY: &str = "fleet-bus-key-0123456789abcdef";
/// The session both pages join.
const SESSION: &str = "fleet-session";

/// The messages of type `kind` in a page's recorded control messages.
fn of_type<'a>(messages: &'a Value, kind: &str) -> Vec<&'a Value> {
    messages
        .as_array()
        .map(|all| all.iter().filter(|m| m["type"] == kind).collect())
        .unwrap_or_default()
}

#[test]
fn segue_page_keeps_its_session_across_an_origin_kill_and_a_device_on_the_other_origin_follows() {
    require_browser_peers();
    let redis = RedisServer::start();
    let bus = redis.url();
    let fleet = Fleet::start_with(
        TRACK_SECONDS,
        &["--bus", &bus],
        &[("SEGUE_BUS_KEY", BUS_KEY)],
    );
    for origin in &fleet.origins {
        let health = http_get(&origin.url("/healthz"), &[]).text();
        assert!(
            health.lines().any(|l| l == "bus: redis ok"),
            "{}: /healthz says {health:?}{}",
            origin.origin,
            fleet.context()
        );
    }
    let origins = format!("{},{}", fleet.origins[0].origin, fleet.origins[1].origin);
    let pids = format!("{},{}", fleet.origins[0].pid(), fleet.origins[1].pid());
    let flags = [
        ("--player", "segue"),
        ("--src", fleet.nginx.origin.as_str()),
        ("--track", &fleet.track),
        ("--session", SESSION),
        ("--origins", &origins),
        ("--pids", &pids),
        ("--kill-at", "3"),
        ("--timeout-ms", "60000"),
    ];
    let summary = run_node_json("fleet_players.mjs", &flags, Duration::from_secs(120));
    let context = || {
        format!(
            "\nsummary: {summary:#}{}\nredis:\n{}",
            fleet.context(),
            redis.log_tail(20)
        )
    };
    assert!(
        summary["ok"] == true,
        "{}{}",
        summary["failures"],
        context()
    );
    let killed_at = summary["killed_at_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("no kill{}", context()));
    let at = |m: &Value| m["at"].as_u64().unwrap_or(0);

    // The first page: joined session SESSION, lost its origin, rejoined the same session.
    let first = &summary["control"]["first"];
    let welcomes = of_type(first, "welcome");
    assert!(
        welcomes.len() >= 2 && welcomes.iter().any(|w| at(w) > killed_at),
        "the first page did not rejoin after the kill: {welcomes:?}{}",
        context()
    );
    for w in &welcomes {
        assert_eq!(
            w["session"],
            SESSION,
            "a welcome into another session{}",
            context()
        );
    }

    // The second page, on the surviving origin all along: one welcome, and every `state` from
    // the first that names the track on shows it, before and after the kill.
    let second = &summary["control"]["second"];
    assert_eq!(of_type(second, "welcome").len(), 1, "{}", context());
    let states = of_type(second, "state");
    let following: Vec<&&Value> = states
        .iter()
        .skip_while(|s| s["track"] != fleet.track.as_str())
        .collect();
    let playing_before = following
        .iter()
        .any(|s| at(s) < killed_at && s["playing"] == true);
    assert!(
        playing_before,
        "before the kill the second page (another origin) never saw the session play {}: \
         {states:?}{}",
        fleet.track,
        context()
    );
    assert!(
        following
            .iter()
            .all(|s| s["track"] == fleet.track.as_str() && s["session"] == SESSION),
        "the second page saw the session lose its track: {states:?}{}",
        context()
    );
    let after: Vec<&&&Value> = following.iter().filter(|s| at(s) > killed_at).collect();
    assert!(
        after.iter().any(|s| s["playing"] == true),
        "after the kill the second page saw no state of the track playing: {states:?}{}",
        context()
    );
    eprintln!(
        "session {SESSION}: killed {} at {} s of playback; the first page joined {} times; the \
         second page (on {}) saw {} states of the track, {} after the kill",
        summary["killed_origin"],
        summary["killed_at_ct"],
        welcomes.len(),
        summary["second_origin"],
        following.len(),
        after.len()
    );
}
