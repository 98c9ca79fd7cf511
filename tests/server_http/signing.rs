//! Signed URLs (`--signing-key`): tokens in the path, carried by relative playlist URIs to every
//! file, so ffmpeg plays a signed stream unchanged; missing, forged and expired tokens get 403
//! and leak nothing.

use std::time::{Duration, SystemTime};

use segue::config::ServeConfig;
use segue::server::signing::Signer;

use super::support::*;

const KEY: &str = "an-operator-secret-of-32-bytes!!";

async fn signed_setup() -> (Fixture, Running) {
    let fixture = Fixture::new(SECONDS).await;
    let config = ServeConfig::new(fixture.lib.library().into(), "127.0.0.1:0", "*", 64)
        .unwrap()
        .with_signing(KEY, 3600)
        .unwrap();
    let server = Running::start_config(config).await;
    (fixture, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_hands_out_signed_urls_that_ffmpeg_plays_unchanged() {
    let (fx, server) = signed_setup().await;
    let track = server.get(&format!("/api/tracks/{}", fx.id), &[]).await;
    assert_eq!(track.status, 200);
    let track: serde_json::Value = serde_json::from_slice(&track.body).unwrap();
    let total = fx.record.gapless.total_samples() as usize;
    for key in ["hls", "dash"] {
        let url = track[key].as_str().unwrap();
        assert!(url.starts_with("/t/"), "{key}: {url}");
        let frames = ffmpeg_frames(&format!("http://{}{url}", server.addr), None).await;
        assert_eq!(frames, total, "{key} through {url}");
    }
    // Prefetch hints are signed too, and fetchable.
    let hint = server
        .get(&format!("/api/prefetch?track={}", fx.id), &[])
        .await;
    let hint: serde_json::Value = serde_json::from_slice(&hint.body).unwrap();
    let init = hint["hints"][0]["init"]["url"].as_str().unwrap();
    assert!(init.starts_with("/t/"));
    assert_eq!(server.get(init, &[]).await.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_forged_expired_and_foreign_tokens_get_403() {
    let (fx, server) = signed_setup().await;
    let rel = format!("{}/1.m4s", fx.rendition_dir(0));
    let scope = format!("/media/{}/", fx.id);
    let signer = Signer::new(Some(KEY.as_bytes().to_vec()), Duration::from_secs(60));
    let good = signer.token(&scope, SystemTime::now()).unwrap();
    assert_eq!(
        server
            .get(&format!("/t/{good}/media/{}/{rel}", fx.id), &[])
            .await
            .status,
        200
    );
    let expired = signer
        .token(&scope, SystemTime::now() - Duration::from_secs(3 * 86_400))
        .unwrap();
    let forged = Signer::new(
        Some(b"somebody-else's-key-000".to_vec()),
        Duration::from_secs(60),
    )
    .token(&scope, SystemTime::now())
    .unwrap();
    let other_track = signer
        .token("/media/000000000000000000000000/", SystemTime::now())
        .unwrap();
    let ws_token = signer.token("/ws", SystemTime::now()).unwrap();
    for target in [
        format!("/media/{}/{rel}", fx.id),
        format!("/media/{}/master.m3u8", fx.id),
        format!("/t/{expired}/media/{}/{rel}", fx.id),
        format!("/t/{forged}/media/{}/{rel}", fx.id),
        format!("/t/{other_track}/media/{}/{rel}", fx.id),
        format!("/t/{ws_token}/media/{}/{rel}", fx.id),
        format!("/t/garbage/media/{}/{rel}", fx.id),
        "/ws".to_string(),
    ] {
        let resp = server
            .get(&target, &[("Origin", "https://player.example")])
            .await;
        assert_eq!(resp.status, 403, "{target}");
        // Readable by a player on another origin, which can then tell it from a network error.
        assert!(
            resp.header("access-control-allow-origin").is_some(),
            "{target}: 403 without CORS headers"
        );
        let body = String::from_utf8_lossy(&resp.body);
        assert!(!body.contains(KEY) && !body.contains("/tmp"), "{body}");
    }
    // The refusals are counted, under the guard's own label.
    let text = String::from_utf8(server.get("/metrics", &[]).await.body).unwrap();
    let refused = r#"segue_http_requests_total{route="token guard",status="403"}"#;
    assert_eq!(metric(&text, refused), 8.0, "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_shows_refusals_and_signed_requests_by_the_url_asked_for() {
    let fx = Fixture::new(SECONDS).await;
    let server = spawn_serve(&fx.lib.library(), &["--signing-key", KEY]).await;
    let addr = server.addr;
    let token = Signer::new(Some(KEY.as_bytes().to_vec()), Duration::from_secs(60))
        .token(&format!("/media/{}/", fx.id), SystemTime::now())
        .unwrap();
    let refused = format!("/t/garbage/media/{}/master.m3u8", fx.id);
    let signed = format!("/t/{token}/media/{}/master.m3u8", fx.id);
    assert_eq!(send(addr, "GET", &refused, &[]).await.status, 403);
    assert_eq!(send(addr, "GET", &signed, &[]).await.status, 200);
    let (code, server) = terminate(server).await;
    assert_eq!(code, Some(0));
    let log = server.log().join("\n");
    let access = |uri: &str, status: u16| {
        log.lines().any(|l| {
            l.contains("finished processing request")
                && l.contains(&format!("uri={uri} "))
                && l.contains(&format!("status={status}"))
        })
    };
    assert!(
        access(&refused, 403),
        "no access-log line for the refusal:\n{log}"
    );
    assert!(
        access(&signed, 200),
        "no access-log line for the signed URL:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_nothing_is_signed_and_token_paths_do_not_exist() {
    let (fx, server) = setup().await;
    let control = server.get("/api/control", &[]).await;
    let control: serde_json::Value = serde_json::from_slice(&control.body).unwrap();
    assert_eq!(control["ws"], "/ws");
    let rel = format!("/t/1.{}/media/{}/master.m3u8", "0".repeat(64), fx.id);
    assert_eq!(server.get(&rel, &[]).await.status, 404);
    server.stop().await;
}
