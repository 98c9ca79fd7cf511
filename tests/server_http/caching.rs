//! Caching headers, conditional requests (RFC 9110 13), media types, HEAD and content codings.

use std::io::Read;
use std::time::{Duration, SystemTime};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_none_match_star_gets_304() {
    let (fx, server) = setup().await;
    let (url, _) = fx.segment();
    let etag = server.etag(&url).await;
    let list = format!("\"nope\", W/{etag}");
    for value in ["*", etag.as_str(), list.as_str()] {
        let r = server.get(&url, &[("If-None-Match", value)]).await;
        assert_eq!((r.status, r.body.len()), (304, 0), "If-None-Match: {value}");
    }
    let r = server.get(&url, &[("If-None-Match", "\"nope\"")]).await;
    assert_eq!(r.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_modified_repeats_validators_and_caching_headers() {
    let (fx, server) = setup().await;
    let url = fx.url("master.m3u8");
    let gz = ("Accept-Encoding", "gzip");
    let full = server.get(&url, &[gz]).await;
    let etag = full.header("etag").unwrap();
    let r = server.get(&url, &[gz, ("If-None-Match", etag)]).await;
    assert_eq!(r.status, 304);
    for name in [
        "etag",
        "cache-control",
        "vary",
        "last-modified",
        "access-control-allow-origin",
    ] {
        assert_eq!(r.header(name), full.header(name), "{name}");
        assert!(r.header(name).is_some(), "{name}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_modified_since_gets_304_unless_if_none_match_disagrees() {
    let (fx, server) = setup().await;
    let url = fx.url("manifest.mpd");
    let full = server.get(&url, &[]).await;
    let lm = full.header("last-modified").unwrap().to_string();
    let r = server.get(&url, &[("If-Modified-Since", &lm)]).await;
    assert_eq!(r.status, 304);
    // RFC 9110 13.2.2: If-None-Match is evaluated instead of If-Modified-Since.
    let r = server
        .get(
            &url,
            &[("If-Modified-Since", &lm), ("If-None-Match", "\"other\"")],
        )
        .await;
    assert_eq!(r.status, 200);
    let old = httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 30));
    assert_eq!(
        server
            .get(&url, &[("If-Modified-Since", &old)])
            .await
            .status,
        200
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_policy_tells_immutable_from_entry_points_and_etags_survive_restarts() {
    let (fx, server) = setup().await;
    let dir = fx.rendition_dir(0).to_string();
    let mut tags = Vec::new();
    for rel in ["init.mp4", "1.m4s", "media.m3u8"] {
        let r = server.get(&fx.url(&format!("{dir}/{rel}")), &[]).await;
        assert_eq!(r.header("cache-control"), Some(IMMUTABLE), "{rel}");
        tags.push(r.header("etag").unwrap().to_string());
    }
    for rel in ["master.m3u8", "manifest.mpd", "waveform.json"] {
        let r = server.get(&fx.url(rel), &[]).await;
        let cc = r.header("cache-control").unwrap();
        assert!(
            cc.contains("max-age=60") && !cc.contains("immutable"),
            "{rel}: {cc}"
        );
        assert!(r.header("last-modified").is_some(), "{rel}");
        tags.push(r.header("etag").unwrap().to_string());
    }
    assert!(
        tags.iter().all(|t| t.starts_with('"')),
        "strong tags: {tags:?}"
    );
    server.stop().await;
    // Another process serving the same library sends the same tags.
    let again = Running::start(&fx.lib.library()).await;
    let r = again.get(&fx.url(&format!("{dir}/init.mp4")), &[]).await;
    assert_eq!(r.header("etag"), Some(tags[0].as_str()));
    let r = again.get("/api/tracks", &[]).await;
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert!(r.header("etag").is_some());
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_types_follow_the_extension_and_head_mirrors_get() {
    let (fx, server) = setup().await;
    let dir = fx.rendition_dir(1).to_string();
    for (rel, ty) in [
        ("master.m3u8".to_string(), "application/vnd.apple.mpegurl"),
        (format!("{dir}/media.m3u8"), "application/vnd.apple.mpegurl"),
        ("manifest.mpd".to_string(), "application/dash+xml"),
        (format!("{dir}/init.mp4"), "audio/mp4"),
        (format!("{dir}/1.m4s"), "audio/mp4"),
        ("waveform.json".to_string(), "application/json"),
    ] {
        let get = server.get(&fx.url(&rel), &[]).await;
        assert_eq!(get.header("content-type"), Some(ty), "{rel}");
        let head = send(server.addr, "HEAD", &fx.url(&rel), &[]).await;
        assert_eq!((head.status, head.body.len()), (200, 0), "HEAD {rel}");
        let len = get.body.len().to_string();
        assert_eq!(
            head.header("content-length"),
            Some(len.as_str()),
            "HEAD {rel}"
        );
        for name in ["content-type", "etag", "cache-control", "accept-ranges"] {
            assert_eq!(head.header(name), get.header(name), "HEAD {rel} {name}");
        }
    }
    server.stop().await;
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn unbrotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(bytes, 4096)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_are_compressed_segments_are_not() {
    let (fx, server) = setup().await;
    let dir = fx.rendition_dir(0).to_string();
    let media_playlist = format!("{dir}/media.m3u8");
    for rel in ["master.m3u8", "manifest.mpd", media_playlist.as_str()] {
        let identity = server.get(&fx.url(rel), &[]).await;
        assert_eq!(identity.header("content-encoding"), None);
        assert_eq!(identity.header("vary"), Some("Accept-Encoding"));
        let gz = server
            .get(&fx.url(rel), &[("Accept-Encoding", "gzip")])
            .await;
        assert_eq!(gz.header("content-encoding"), Some("gzip"), "{rel}");
        assert_eq!(gunzip(&gz.body), identity.body);
        let br = server
            .get(&fx.url(rel), &[("Accept-Encoding", "gzip;q=0.5, br")])
            .await;
        assert_eq!(br.header("content-encoding"), Some("br"), "{rel}");
        assert_eq!(unbrotli(&br.body), identity.body);
        let tags = [&identity, &gz, &br].map(|r| r.header("etag").unwrap().to_string());
        assert!(
            tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2],
            "{tags:?}"
        );
        // A Range is served from the identity representation.
        let r = server
            .get(
                &fx.url(rel),
                &[("Accept-Encoding", "br"), ("Range", "bytes=0-6")],
            )
            .await;
        assert_eq!((r.status, r.header("content-encoding")), (206, None));
        assert_eq!(r.body, identity.body[..7]);
    }
    let api = server
        .get("/api/tracks", &[("Accept-Encoding", "gzip")])
        .await;
    assert_eq!(api.header("content-encoding"), Some("gzip"));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&gunzip(&api.body)).unwrap()["total"],
        1
    );
    for rel in [format!("{dir}/1.m4s"), format!("{dir}/init.mp4")] {
        let r = server
            .get(&fx.url(&rel), &[("Accept-Encoding", "gzip, br")])
            .await;
        assert_eq!(
            (r.header("content-encoding"), r.header("vary")),
            (None, None),
            "{rel}"
        );
    }
    server.stop().await;
}
