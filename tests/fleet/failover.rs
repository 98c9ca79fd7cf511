//! Failover with real players: hls.js, dash.js and segue's own page play a track through nginx
//! (`tests/peers/fleet_players.mjs`) while origin a is killed with SIGKILL mid-track. Playback
//! reaches `ended` with no `waiting` after the first `playing` for lack of data (one with seconds
//! buffered ahead, a renderer underrun of the loaded machine, is reported, not failed; see
//! `fleet_players.mjs`) and no player error or failed request, and nginx's
//! access log shows that the kill mattered: both origins served segments before it, and the
//! segments after it were cache misses that the surviving origin served, at least one request
//! having been tried on the dead origin first (a failover inside one client request).

use std::time::Duration;

use crate::fixture::{Access, Fleet, origin_addr};
use crate::peers::{ServerExt, require_browser_peers, run_node_json};

/// The track's length (s) for hls.js and dash.js on player.html (8 s buffer goal): a few seconds
/// of play before the kill and more than a buffer goal after it.
const PLAYER_HTML_TRACK_SECONDS: f64 = 20.0;
/// The track's length (s) for segue's page, whose buffer goal is 25 s.
const SEGUE_PAGE_TRACK_SECONDS: f64 = 34.0;
/// Playhead position (s) at which origin a is killed.
const KILL_AT_S: &str = "3";
/// The node script's own deadline.
const RUN_TIMEOUT_MS: &str = "60000";

/// Plays the fleet's track with `player` through nginx, kills origin a mid-track and checks
/// the player's summary and nginx's access log.
fn play_through_a_kill(player: &str) {
    require_browser_peers();
    let seconds = match player {
        "segue" => SEGUE_PAGE_TRACK_SECONDS,
        _ => PLAYER_HTML_TRACK_SECONDS,
    };
    let fleet = Fleet::start(seconds, &[]);
    let track = fleet.origins[0].track(&fleet.track);
    let via_nginx = |url: &str| {
        fleet
            .nginx
            .url(url.trim_start_matches(&fleet.origins[0].origin))
    };
    let src = match player {
        "hls.js" => via_nginx(&track.hls),
        "dash.js" => via_nginx(&track.dash),
        _ => fleet.nginx.origin.clone(),
    };
    let pid = fleet.origins[0].pid().to_string();
    let flags = [
        ("--player", player),
        ("--src", &src),
        ("--track", &fleet.track),
        ("--kill-pid", &pid),
        ("--kill-at", KILL_AT_S),
        ("--timeout-ms", RUN_TIMEOUT_MS),
    ];
    let summary = run_node_json("fleet_players.mjs", &flags, Duration::from_secs(120));
    let log = crate::fixture::access_log(&fleet.nginx);
    let context = || {
        format!(
            "\nsummary: {summary:#}\nnginx access log:\n{}{}",
            log.iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join("\n"),
            fleet.context()
        )
    };
    assert!(
        summary["ok"] == true,
        "{player}: {}{}",
        summary["failures"],
        context()
    );
    let killed_at = summary["killed_at_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("no kill{}", context()));

    let (dead, alive) = (
        origin_addr(&fleet.origins[0]),
        origin_addr(&fleet.origins[1]),
    );
    let served_by = |a: &Access, addr: &str| a.upstreams.last().is_some_and(|u| u == addr);
    let segments: Vec<&Access> = log.iter().filter(|a| a.is_segment()).collect();
    let (before, after): (Vec<&Access>, Vec<&Access>) =
        segments.into_iter().partition(|a| a.at_ms < killed_at);
    for (name, addr) in [("a", &dead), ("b", &alive)] {
        assert!(
            before.iter().any(|a| served_by(a, addr)),
            "origin {name} ({addr}) served no segment before the kill{}",
            context()
        );
    }
    // The killed origin's own log says so too (it logged every request up to its death).
    let dead_log = fleet.origins[0].log();
    assert!(
        dead_log.iter().any(|l| l.contains(".m4s")),
        "origin a's log names no segment:\n{}",
        dead_log.join("\n")
    );
    // After the kill: segments came from the survivor, through the cache (misses, not hits:
    // the cache did not hide the kill).
    assert!(
        !after.is_empty(),
        "no segment was fetched after the kill{}",
        context()
    );
    for a in &after {
        assert!(
            a.status == 200 && a.cache == "MISS" && served_by(a, &alive),
            "after the kill, a segment not served by origin b as a 200 cache miss: {a:?}{}",
            context()
        );
    }
    let failed_over: Vec<&Access> = log
        .iter()
        .filter(|a| a.at_ms >= killed_at && a.status < 400 && a.upstreams.len() >= 2)
        .filter(|a| a.upstreams[0] == dead && served_by(a, &alive))
        // The survivor's answer: 200, 206, 304, or 101 for a WebSocket upgrade.
        .filter(|a| {
            let last = a.upstream_statuses.last();
            last.and_then(|s| s.parse::<u16>().ok())
                .is_some_and(|s| s < 400)
        })
        .collect();
    assert!(
        !failed_over.is_empty(),
        "no request after the kill was tried on the dead origin and answered by the other{}",
        context()
    );
    eprintln!(
        "{player}: killed at {} s of playback; segments before {}, after {} (all misses from b); \
         failed over: {:?}; `waiting` with data buffered (not failed): {}",
        summary["killed_at_ct"],
        before.len(),
        after.len(),
        failed_over.iter().map(|a| &a.uri).collect::<Vec<_>>(),
        summary["waiting_with_data"]
    );
}

#[test]
fn hls_js_plays_to_the_end_through_nginx_while_an_origin_is_killed() {
    play_through_a_kill("hls.js");
}

#[test]
fn dash_js_plays_to_the_end_through_nginx_while_an_origin_is_killed() {
    play_through_a_kill("dash.js");
}

#[test]
fn segue_page_plays_to_the_end_through_nginx_while_an_origin_is_killed() {
    play_through_a_kill("segue");
}
