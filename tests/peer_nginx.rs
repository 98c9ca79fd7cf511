//! nginx (Debian's) as a caching reverse proxy in front of a real `segue serve`, the stand-in
//! for a CDN: a full playback (every URL the HLS master and the DASH MPD lead to) is replayed
//! twice through nginx (`tests/peers/replay.py`). The second pass is served from nginx's cache
//! for every init and media segment (`X-Cache-Status: HIT`), and segue itself sees no segment
//! request during it: its per-route request counter at `/metrics` moves only by the manifest
//! requests nginx forwarded (an expired master or MPD), and its access log names no segment.
//!
//! The nginx config is `tests/peers/nginx-cache.conf`, rendered into a temp dir; nginx runs in
//! the foreground as the current user with every path in that dir.

mod common;
#[path = "peers/support.rs"]
mod support;

use std::process::Command;
use std::time::Duration;

use support::nginx::{Nginx, require_nginx};
use support::*;

const TRACK_SECONDS: f64 = 10.0;
const REPLAY_LIMIT: Duration = Duration::from_secs(60);

/// One request of a replay pass, as `replay.py` reports it.
#[derive(Debug, serde::Deserialize)]
struct Fetched {
    url: String,
    kind: String,
    status: u16,
    cache: Option<String>,
    bytes: u64,
}

/// Replays the whole playback of the track at `hls` and `dash` once.
fn replay(hls: &str, dash: &str) -> Vec<Fetched> {
    let mut cmd = Command::new("python3");
    cmd.arg(peers_dir().join("replay.py")).args([hls, dash]);
    let out = run_bounded(cmd, REPLAY_LIMIT);
    assert!(
        out.status.success(),
        "replay.py failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    #[derive(serde::Deserialize)]
    struct Report {
        requests: Vec<Fetched>,
    }
    let report: Report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "replay.py output ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    report.requests
}

/// Sum of segue's request counters (`*_total` samples whose name mentions requests) over the
/// samples whose labels name a media route (`/media/…`, or a segment route); None if none does.
/// Manifests and segments may share one route (`/media/{track_id}/{*path}`), so callers compare
/// the count with the requests nginx forwarded rather than expect segments alone.
fn media_requests(metrics: &str) -> Option<f64> {
    let mut found = None;
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once('}') else {
            continue; // no labels, so no route
        };
        let Some((name, labels)) = series.split_once('{') else {
            continue;
        };
        let labels = labels.to_ascii_lowercase();
        if name.contains("request")
            && name.ends_with("_total")
            && ["media", "segment", "m4s"]
                .iter()
                .any(|r| labels.contains(r))
        {
            let value: f64 = value
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("bad metrics sample: {line}"));
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

/// Whether nginx passed the request on to segue, by its `$upstream_cache_status`: HIT, STALE and
/// UPDATING are answered from the cache alone.
fn forwarded(f: &Fetched) -> bool {
    !matches!(f.cache.as_deref(), Some("HIT" | "STALE" | "UPDATING"))
}

fn metrics(server: &Server) -> String {
    let resp = http_get(&server.url("/metrics"), &[]);
    assert_eq!(resp.status, 200, "GET /metrics on segue: {}", resp.text());
    resp.text()
}

/// Access log lines that name a segment or init segment.
fn segment_log_lines(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|l| l.contains(".m4s") || l.contains("init.mp4"))
        .collect()
}

#[test]
fn second_playback_through_nginx_is_served_from_its_cache_without_segment_requests_to_segue() {
    require_nginx();
    require_program("python3", "python3", &["--version"], "Python 3 (CI image)");
    let library = Library::generated(TRACK_SECONDS);
    let server = Server::start(&library.root(), &[]);
    let track = server.track(&library.track_id);
    let nginx = Nginx::start(
        "nginx-cache.conf",
        &[("@UPSTREAM@", server.origin.trim_start_matches("http://"))],
    );
    let via_nginx = |url: &str| url.replacen(&server.origin, &nginx.origin, 1);
    let (hls, dash) = (via_nginx(&track.hls), via_nginx(&track.dash));
    let context = || {
        format!(
            "\nnginx error.log:\n{}\nsegue log (tail):\n{}",
            nginx.error_log(),
            server.log_tail(30)
        )
    };

    let before_first = media_requests(&metrics(&server)).unwrap_or(0.0);
    let first = replay(&hls, &dash);
    for kind in ["master", "media_playlist", "init", "segment", "mpd"] {
        assert!(
            first.iter().any(|f| f.kind == kind),
            "the replay fetched no {kind}: {first:#?}"
        );
    }
    let failed: Vec<&Fetched> = first.iter().filter(|f| f.status != 200).collect();
    assert!(failed.is_empty(), "first pass: {failed:#?}{}", context());
    let distinct_segments: std::collections::BTreeSet<&str> = first
        .iter()
        .filter(|f| f.kind == "segment")
        .map(|f| f.url.as_str())
        .collect();
    let metrics_after_first = metrics(&server);
    let after_first = media_requests(&metrics_after_first).unwrap_or_else(|| {
        panic!(
            "segue's /metrics has no request counter with a media route label \
             (a `*request*_total` sample whose labels mention `media`, `segment` or `m4s`):\n\
             {metrics_after_first}"
        )
    });
    assert!(
        after_first - before_first >= distinct_segments.len() as f64,
        "segue counted {} media requests during the first pass, which fetched {} segments \
         through a cold cache:\n{metrics_after_first}",
        after_first - before_first,
        distinct_segments.len()
    );
    let log_mark = server.log().len();
    assert!(
        !segment_log_lines(&server.log()).is_empty(),
        "segue's access log (tower_http=info) names no segment of the first pass, so it cannot \
         show the second has none:\n{}",
        server.log_tail(20)
    );

    let second = replay(&hls, &dash);
    assert_eq!(
        second.len(),
        first.len(),
        "the second pass fetched other URLs"
    );
    let not_cached: Vec<&Fetched> = second
        .iter()
        .filter(|f| {
            f.status != 200
                || (matches!(f.kind.as_str(), "init" | "segment")
                    && f.cache.as_deref() != Some("HIT"))
        })
        .collect();
    assert!(
        not_cached.is_empty(),
        "second pass: init and media segments must all be 200 with X-Cache-Status: HIT:\n\
         {not_cached:#?}{}",
        context()
    );
    // Only what nginx forwarded may reach segue: an expired or revalidated manifest, never a
    // segment (those are all HIT, checked above).
    let expected = second.iter().filter(|f| forwarded(f)).count() as f64;
    let metrics_after_second = metrics(&server);
    let after_second = media_requests(&metrics_after_second).expect("media request counter");
    assert_eq!(
        after_second - after_first,
        expected,
        "during the cached second pass segue served {} media requests, nginx forwarded {expected}:\n\
         {metrics_after_second}",
        after_second - after_first
    );
    let log = server.log();
    let leaked = segment_log_lines(&log[log_mark.min(log.len())..]);
    assert!(
        leaked.is_empty(),
        "segue's access log shows segment requests during the second pass:\n{leaked:#?}"
    );
    let manifests: Vec<String> = second
        .iter()
        .filter(|f| !matches!(f.kind.as_str(), "init" | "segment"))
        .map(|f| format!("{} {:?}", f.kind, f.cache))
        .collect();
    eprintln!(
        "first pass {} requests ({} distinct segments, segue counted {} media requests); second \
         pass all init/segments HIT, manifests {manifests:?}, segue counted {}; bytes {}",
        first.len(),
        distinct_segments.len(),
        after_first - before_first,
        after_second - after_first,
        second.iter().map(|f| f.bytes).sum::<u64>()
    );
}
