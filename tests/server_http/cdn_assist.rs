//! CDN cooperation (src/server/media.rs `Assist`, src/server/cmcd.rs): segment responses name
//! the next segment for Akamai's edge (`CDN-Origin-Assist-Prefetch-Path`), media playlists
//! preload their first objects (`Link`, RFC 8288), and the CMCD players send (CTA-5004) is
//! counted and its `nor` warmed (into the hot-file cache, and from a moto bucket into the
//! origin's caches); none of it changes bytes, validators or caching.

use std::path::Path;
use std::time::{Duration, SystemTime};

use segue::config::ServeConfig;
use segue::server::signing::Signer;

use crate::common::s3::S3Server;
use crate::common::{ServeCommand, TempLibrary, make_wav};
use crate::support::*;

const PREFETCH: &str = "cdn-origin-assist-prefetch-path";
const KEY: &str = "an-operator-secret-of-32-bytes!!";

/// `reference` resolved against the request target `base` (RFC 3986 5.2 for a path-only
/// reference without dot segments: the base's last segment replaced).
fn resolve(base: &str, reference: &str) -> String {
    let (dir, _) = base.rsplit_once('/').expect("an absolute path");
    format!("{dir}/{reference}")
}

/// The URL-encoded `CMCD` query argument of `payload` (as `encodeURIComponent` writes it).
fn cmcd_query(payload: &str) -> String {
    let mut out = String::from("CMCD=");
    for b in payload.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The fields a cache keys and validates on, which CDN cooperation must leave alone.
fn cache_view(r: &Resp) -> (u16, Option<String>, Option<String>, Vec<u8>) {
    let field = |n: &str| r.header(n).map(str::to_string);
    (
        r.status,
        field("etag"),
        field("cache-control"),
        r.body.clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_segment_names_the_next_and_the_last_names_none() {
    let (fx, server) = setup().await;
    let rendition = &fx.record.renditions[0];
    // The record's own segment list, not the playlist the server reads.
    let count = rendition.segment_sizes.len();
    assert!(count >= 2, "the test track has {count} segment(s)");
    let dir = &rendition.dir;
    for n in 1..=count {
        let url = fx.url(&format!("{dir}/{n}.m4s"));
        // Twice: the first answer comes from the router, the second from the hot path.
        for pass in ["router", "hot path"] {
            let resp = server.get(&url, &[]).await;
            assert_eq!(resp.status, 200, "{url} ({pass})");
            let expected = (n < count).then(|| format!("{}.m4s", n + 1));
            assert_eq!(resp.header(PREFETCH), expected.as_deref(), "{url} ({pass})");
            if let Some(next) = resp.header(PREFETCH) {
                let next_url = resolve(&url, next);
                assert_eq!(server.get(&next_url, &[]).await.status, 200, "{next_url}");
            }
            assert_eq!(resp.header("link"), None, "{url}: no Link on segments");
        }
    }
    let init = server.get(&fx.url(&format!("{dir}/init.mp4")), &[]).await;
    assert_eq!(init.header(PREFETCH), Some("1.m4s"));
    for pass in ["router", "hot path"] {
        let playlist = server
            .get(&fx.url(&format!("{dir}/{}", rendition.playlist)), &[])
            .await;
        assert_eq!(playlist.status, 200);
        let link = playlist.header("link").unwrap_or_default();
        for object in [rendition.init.as_str(), "1.m4s"] {
            assert!(
                link.contains(&format!("<{object}>; rel=preload")),
                "{pass}: {link:?}"
            );
            let text = String::from_utf8_lossy(&playlist.body);
            assert!(text.contains(object), "the playlist names {object}");
        }
        assert_eq!(playlist.header(PREFETCH), None);
    }
    for entry in ["master.m3u8", "manifest.mpd"] {
        let resp = server.get(&fx.url(entry), &[]).await;
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("link"), None, "{entry}");
        assert_eq!(resp.header(PREFETCH), None, "{entry}");
    }
    // A missing segment past the end is a plain 404.
    let past = server
        .get(&fx.url(&format!("{dir}/{}.m4s", count + 1)), &[])
        .await;
    assert_eq!((past.status, past.header(PREFETCH)), (404, None));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_headers_leave_etag_304_and_ranges_alone() {
    let (fx, server) = setup().await;
    let (url, bytes) = fx.segment();
    let plain = server.get(&url, &[]).await;
    assert_eq!(plain.body, bytes);
    assert_eq!(plain.header("cache-control"), Some(IMMUTABLE));
    let etag = plain.header("etag").unwrap().to_string();
    let with_cmcd = format!(
        "{url}?{}",
        cmcd_query("bl=3000,mtp=9000,nor=\"2.m4s\",sid=\"s\"")
    );
    for target in [&url, &with_cmcd] {
        let again = server.get(target, &[]).await;
        assert_eq!(cache_view(&again), cache_view(&plain), "{target}");
        let revalidated = server.get(target, &[("If-None-Match", &etag)]).await;
        assert_eq!(revalidated.status, 304, "{target}");
        assert_eq!(revalidated.header("etag"), Some(etag.as_str()));
        assert!(revalidated.body.is_empty());
        assert_eq!(revalidated.header(PREFETCH), plain.header(PREFETCH));
        let range = server.get(target, &[("Range", "bytes=10-99")]).await;
        assert_eq!(range.status, 206, "{target}");
        assert_eq!(range.body, bytes[10..100]);
        assert_eq!(range.header("etag"), Some(etag.as_str()));
        assert_eq!(range.header(PREFETCH), plain.header(PREFETCH));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_urls_keep_their_token_in_what_the_headers_name() {
    let fx = Fixture::new(SECONDS).await;
    let config = ServeConfig::new(fx.lib.library().into(), "127.0.0.1:0", "*", 64)
        .unwrap()
        .with_signing(KEY, 3600)
        .unwrap();
    let server = Running::start_config(config).await;
    let token = Signer::new(Some(KEY.as_bytes().to_vec()), Duration::from_secs(600))
        .token(&format!("/media/{}/", fx.id), SystemTime::now())
        .unwrap();
    let dir = fx.rendition_dir(0);
    let signed = |rel: &str| format!("/t/{token}/media/{}/{dir}/{rel}", fx.id);
    // With a CMCD query too: the token is in the path, so the query does not touch it.
    let cmcd = cmcd_query("bl=2000,nor=\"2.m4s\",sid=\"signed\"");
    for target in [signed("1.m4s"), format!("{}?{cmcd}", signed("1.m4s"))] {
        for pass in ["router", "hot path"] {
            let resp = server.get(&target, &[]).await;
            assert_eq!(resp.status, 200, "{target} ({pass})");
            let next = resp.header(PREFETCH).expect("a prefetch path");
            let next_url = resolve(signed("1.m4s").as_str(), next);
            assert!(next_url.starts_with(&format!("/t/{token}/")), "{next_url}");
            assert_eq!(server.get(&next_url, &[]).await.status, 200, "{next_url}");
        }
    }
    let playlist = server.get(&signed("media.m3u8"), &[]).await;
    let link = playlist.header("link").unwrap_or_default().to_string();
    let first = link
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(target, _)| target)
        .expect("a Link target");
    let preload = resolve(&signed("media.m3u8"), first);
    assert_eq!(server.get(&preload, &[]).await.status, 200, "{preload}");
    let text = String::from_utf8(server.get("/metrics", &[]).await.body).unwrap();
    let valid = r#"segue_cmcd_requests_total{transmission="query",outcome="valid"}"#;
    assert_eq!(metric(&text, valid), 2.0, "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cmcd_is_counted_and_its_next_object_warmed() {
    let (fx, server) = setup().await;
    let dir = fx.rendition_dir(0);
    let first = fx.url(&format!("{dir}/1.m4s"));
    let query = cmcd_query("bl=1500,mtp=25000,nor=\"2.m4s\",sid=\"session-one\"");
    assert_eq!(
        server.get(&format!("{first}?{query}"), &[]).await.status,
        200
    );
    let warmed = r#"segue_cmcd_warms_total{outcome="warmed"}"#;
    let text = server.metrics_once(warmed, 1.0).await;
    assert_eq!(metric(&text, warmed), 1.0, "{text}");
    let misses = metric(&text, "segue_cache_misses_total");
    let hits = metric(&text, "segue_cache_hits_total");
    // The warmed segment is now served from memory: a hit, no new miss.
    let second = fx.url(&format!("{dir}/2.m4s"));
    assert_eq!(server.get(&second, &[]).await.status, 200);
    let text = String::from_utf8(server.get("/metrics", &[]).await.body).unwrap();
    assert_eq!(metric(&text, "segue_cache_misses_total"), misses, "{text}");
    assert!(metric(&text, "segue_cache_hits_total") > hits, "{text}");
    // The header form (CTA-5004 2.1), another session.
    let headers = [
        ("CMCD-Request", "bl=3200,mtp=800"),
        ("CMCD-Object", "br=128,d=2000,ot=a"),
        ("CMCD-Session", "sid=\"session-two\",sf=h,st=v"),
    ];
    assert_eq!(server.get(&second, &headers).await.status, 200);
    let text = String::from_utf8(server.get("/metrics", &[]).await.body).unwrap();
    for (series, value) in [
        (
            r#"segue_cmcd_requests_total{transmission="query",outcome="valid"}"#,
            1.0,
        ),
        (
            r#"segue_cmcd_requests_total{transmission="headers",outcome="valid"}"#,
            1.0,
        ),
        ("segue_cmcd_sessions", 2.0),
        ("segue_cmcd_buffer_length_ms_count", 2.0),
        ("segue_cmcd_buffer_length_ms_sum", 4700.0),
        ("segue_cmcd_throughput_kbps_count", 2.0),
        (r#"segue_cmcd_buffer_length_ms_bucket{le="1600.0"}"#, 1.0),
    ] {
        assert_eq!(metric(&text, series), value, "{series} in\n{text}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_cmcd_is_ignored_and_the_answer_unchanged() {
    let (fx, server) = setup().await;
    let (url, bytes) = fx.segment();
    let plain = server.get(&url, &[]).await;
    assert_eq!(plain.body, bytes);
    let overlong = format!("sid=\"{}\"", "a".repeat(3000));
    let invalid_queries = [
        cmcd_query(&overlong),
        "CMCD=bl%3D1%zz".to_string(),
        "CMCD=%".to_string(),
        cmcd_query("bl=1,bl=2"),
        cmcd_query("bl=99999999999999999999999999"),
        cmcd_query("mtp=-1"),
        cmcd_query("sid=\"unterminated"),
        cmcd_query("nor=\"%zz\""),
    ];
    // Valid CMCD, but `nor` leaves the rendition's track or names what the ingest never
    // writes: not warmed.
    let refused_queries = [
        cmcd_query("nor=\"..%2F..%2F..%2F..%2Fetc%2Fpasswd\""),
        cmcd_query("nor=\"..%2F..%2F000000000000000000000000%2Fmaster.m3u8\""),
        cmcd_query("nor=\"..%2Ftrack.json\""),
        cmcd_query("nor=\"%2Fetc%2Fpasswd\""),
        cmcd_query("nor=\"http%3A%2F%2Fevil.example%2Fx.m4s\""),
    ];
    for query in invalid_queries.iter().chain(&refused_queries) {
        let resp = server.get(&format!("{url}?{query}"), &[]).await;
        assert_eq!(cache_view(&resp), cache_view(&plain), "{query}");
    }
    let long_header = format!("sid=\"{}\"", "b".repeat(3000));
    let invalid_headers: [&[(&str, &str)]; 3] = [
        &[("CMCD-Session", &long_header)],
        &[("CMCD-Request", "bl=1"), ("CMCD-Status", "bl=2")],
        &[("CMCD-Request", "bl=1 , mtp=2")],
    ];
    for headers in invalid_headers {
        let resp = server.get(&url, headers).await;
        assert_eq!(cache_view(&resp), cache_view(&plain), "{headers:?}");
    }
    let text = String::from_utf8(server.get("/metrics", &[]).await.body).unwrap();
    for (series, value) in [
        (
            r#"segue_cmcd_requests_total{transmission="query",outcome="invalid"}"#,
            invalid_queries.len(),
        ),
        (
            r#"segue_cmcd_requests_total{transmission="headers",outcome="invalid"}"#,
            invalid_headers.len(),
        ),
        (
            r#"segue_cmcd_warms_total{outcome="refused"}"#,
            refused_queries.len(),
        ),
        (r#"segue_cmcd_warms_total{outcome="warmed"}"#, 0),
        ("segue_cmcd_sessions", 0),
    ] {
        assert_eq!(metric(&text, series), value as f64, "{series} in\n{text}");
    }
    server.stop().await;
}

/// How many times the bucket has been asked for an object whose key ends with `key`.
fn bucket_reads(s3: &S3Server, key: &str) -> usize {
    // Waits for moto's log to be quiet: blocking, so off the runtime's worker.
    let requests = tokio::task::block_in_place(|| s3.requests());
    requests
        .iter()
        .filter(|r| r.starts_with("GET ") && r.split(' ').nth(1).is_some_and(|t| t.ends_with(key)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nor_warms_a_bucket_object_so_the_next_request_spares_the_bucket() {
    let s3 = tokio::task::block_in_place(S3Server::start);
    let temp = TempLibrary::new();
    let state = temp.dir.path().join("machine");
    let wav = make_wav(&temp.inputs(), "bucket.wav", 48_000, SECONDS);
    let id =
        tokio::task::block_in_place(|| s3.ingest_from_machine("lib", &state, &[&wav])).remove(0);
    let cache_dir = state.join("disk-cache");
    let server = tokio::task::block_in_place(|| {
        ServeCommand::new(Path::new(&s3.url("lib")))
            .args(&["--cache-dir", &cache_dir.to_string_lossy()])
            .envs(s3.machine_env(&state))
            .start()
    });
    let track = send(server.addr, "GET", &format!("/api/tracks/{id}"), &[]).await;
    let track: serde_json::Value = serde_json::from_slice(&track.body).unwrap();
    let init = track["renditions"][0]["init"]
        .as_str()
        .expect("an init URL");
    let (base, _) = init.rsplit_once('/').expect("a rendition directory");
    let next_key = format!("{}/2.m4s", base.trim_start_matches("/media/"));
    assert_eq!(
        bucket_reads(&s3, &next_key),
        0,
        "nothing read {next_key} yet"
    );
    let first = format!("{base}/1.m4s?{}", cmcd_query("nor=\"2.m4s\",sid=\"b\""));
    // Streamed from the bucket as it arrives (a plain GET of an uncached object): the CDN
    // header is there too.
    let streamed = send(server.addr, "GET", &first, &[]).await;
    assert_eq!(streamed.status, 200);
    assert_eq!(streamed.header(PREFETCH), Some("2.m4s"));
    let warmed = r#"segue_cmcd_warms_total{outcome="warmed"}"#;
    let mut text = String::new();
    for _ in 0..200 {
        let resp = send(server.addr, "GET", "/metrics", &[]).await;
        text = String::from_utf8(resp.body).unwrap();
        if metric(&text, warmed) >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(metric(&text, warmed), 1.0, "{text}");
    assert_eq!(bucket_reads(&s3, &next_key), 1, "the warm-up read it once");
    let second = send(server.addr, "GET", &format!("{base}/2.m4s"), &[]).await;
    assert_eq!(second.status, 200);
    assert_eq!(
        bucket_reads(&s3, &next_key),
        1,
        "the player's request for it was served from the caches"
    );
    tokio::task::block_in_place(|| drop(server));
}
