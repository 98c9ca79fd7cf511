//! Real players on a bucket origin: ffmpeg decodes HLS and DASH to the exact sample count of
//! the track record, and hls.js (in headless Chromium, `tests/peers/players.mjs`) plays and
//! switches renditions from each of two origins on one bucket.

use std::time::Duration;

use crate::fixture::{BucketLibrary, assert_no_panic, metric_sum};
use crate::peers::{ServerExt, http_get, require_browser_peers, run_node_json};
use crate::support::ffmpeg_frames;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_decodes_hls_and_dash_from_a_bucket_origin_to_the_exact_sample_count() {
    let bucket = BucketLibrary::new();
    let (id, server) = tokio::task::block_in_place(|| {
        let id = bucket.ingest("ingester", &bucket.wav("song.wav", 4.0));
        (id.clone(), bucket.serve("origin", &[]))
    });
    let record = bucket.record(&id).await;
    let total = record.gapless.total_samples() as usize;
    for entry in ["master.m3u8", "manifest.mpd"] {
        let url = server.url(&format!("/media/{id}/{entry}"));
        // The first audio stream: AAC-LC in both (src/manifest/mod.rs lists that set first).
        assert_eq!(ffmpeg_frames(&url, Some("0:a:0")).await, total, "{url}");
    }
    // The origin read those files from the bucket, and says so.
    let metrics = tokio::task::block_in_place(|| http_get(&server.url("/metrics"), &[]));
    let text = metrics.text();
    let ok = ["op=\"get\"", "outcome=\"ok\""];
    let gets = metric_sum(&text, "segue_bucket_requests_total", &ok);
    let bytes = metric_sum(&text, "segue_bucket_bytes_total", &ok);
    assert!(
        gets > 0.0 && bytes > 0.0,
        "gets {gets}, bytes {bytes}:\n{text}"
    );
    assert_no_panic(&server, "the origin");
}

/// Long enough for hls.js to start, switch down and up, and play on after each switch.
const PLAYED_SECONDS: f64 = 12.0;

#[test]
fn hls_js_plays_a_bucket_track_from_each_of_two_origins() {
    require_browser_peers();
    let bucket = BucketLibrary::new();
    let id = bucket.ingest("ingester", &bucket.wav("song.wav", PLAYED_SECONDS));
    let origins = [bucket.serve("origin-a", &[]), bucket.serve("origin-b", &[])];
    for server in &origins {
        let track = server.track(&id);
        let master = http_get(&track.hls, &[]).text();
        // The master playlist's first variant, its lowest bitrate (peer_browsers.rs says why).
        let hls_low = master
            .lines()
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .and_then(|l| l.split('/').next())
            .unwrap_or_else(|| panic!("no variant in {master}"))
            .to_string();
        let flags = [
            ("--hls", track.hls.as_str()),
            ("--dash", &track.dash),
            ("--low", &track.low_dir),
            ("--high", &track.high_dir),
            ("--hls-low", &hls_low),
            ("--cases", "hls.js:hls"),
            ("--case-timeout-ms", "30000"),
        ];
        let summary = run_node_json("players.mjs", &flags, Duration::from_secs(90));
        let case = &summary["cases"][0];
        assert!(
            case["ok"] == true,
            "hls.js on {}: {}\n  errors: {}\n  switches: {}\n  requests: {}\nlog:\n{}",
            server.origin,
            case["failures"],
            case["errors"],
            case["switches"],
            case["requests"],
            server.log_tail(30)
        );
        assert_no_panic(server, "an origin");
    }
}
