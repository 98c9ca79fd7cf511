//! `segue serve` over a real socket, one test per HTTP rule (RFC 9110 caching, conditional
//! requests, ranges, content codings; CORS; path safety; operations), plus ffmpeg decoding every
//! rendition through the server. Each test ingests its own short track into a temp library with
//! `ingest_batch` and runs `serve` on 127.0.0.1:0 with a oneshot shutdown.

mod common;
#[path = "server_http/support.rs"]
mod support;

#[path = "server_http/abuse.rs"]
mod abuse;
#[path = "server_http/caching.rs"]
mod caching;
#[path = "server_http/cdn_assist.rs"]
mod cdn_assist;
#[path = "server_http/hot.rs"]
mod hot;
#[path = "server_http/operations.rs"]
mod operations;
#[path = "server_http/prefetch.rs"]
mod prefetch;
#[path = "server_http/ranges.rs"]
mod ranges;
#[path = "server_http/safety.rs"]
mod safety;
#[path = "server_http/signing.rs"]
mod signing;
#[path = "server_http/zerocopy.rs"]
mod zerocopy;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_decodes_every_rendition_over_http_to_the_exact_sample_count() {
    let (fx, server) = setup().await;
    let total = fx.record.gapless.total_samples() as usize;
    let base = format!("http://{}", server.addr);
    // The manifests list one switching set per AAC profile, AAC-LC first; the master playlist
    // lists the first set only (src/manifest/mod.rs). ffmpeg numbers the streams in that order.
    let sets = segue::manifest::switching_sets(&fx.record);
    for (i, r) in sets.iter().flatten().enumerate() {
        let playlist = format!("{base}{}", fx.url(&format!("{}/{}", r.dir, r.playlist)));
        assert_eq!(
            ffmpeg_frames(&playlist, None).await,
            total,
            "{} media playlist",
            r.id
        );
        let stream = format!("0:a:{i}");
        if i < sets[0].len() {
            let master = format!("{base}{}", fx.url("master.m3u8"));
            assert_eq!(
                ffmpeg_frames(&master, Some(&stream)).await,
                total,
                "{} via master",
                r.id
            );
        }
        let mpd = format!("{base}{}", fx.url("manifest.mpd"));
        assert_eq!(
            ffmpeg_frames(&mpd, Some(&stream)).await,
            total,
            "{} via MPD",
            r.id
        );
    }
    server.stop().await;
}
