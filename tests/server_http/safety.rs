//! CORS, and paths that must never reach a file outside the track directory.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_allows_range() {
    let (fx, server) = setup().await;
    let (url, _) = fx.segment();
    let request = [
        ("Origin", "https://player.example"),
        ("Access-Control-Request-Method", "GET"),
        ("Access-Control-Request-Headers", "range, if-none-match"),
    ];
    let r = send(server.addr, "OPTIONS", &url, &request).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let methods = r.header("access-control-allow-methods").unwrap();
    assert!(
        ["GET", "HEAD", "OPTIONS"]
            .iter()
            .all(|m| methods.contains(m)),
        "{methods}"
    );
    let allowed = r
        .header("access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    for h in ["range", "if-none-match", "if-modified-since", "if-range"] {
        assert!(allowed.contains(h), "{allowed}");
    }
    assert!(r.header("access-control-max-age").is_some());
    // Every response, errors and 304s included, carries the CORS headers.
    let origin = [("Origin", "https://player.example")];
    let etag = server.etag(&url).await;
    let responses = [
        server.get(&url, &origin).await,
        server
            .get(&url, &[origin[0], ("If-None-Match", &etag)])
            .await,
        server.get(&fx.url("nope.m3u8"), &origin).await,
        server.get("/api/tracks", &origin).await,
    ];
    for r in &responses {
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("*"),
            "{}",
            r.status
        );
        assert_eq!(r.header("timing-allow-origin"), Some("*"));
        let exposed = r.header("access-control-expose-headers").unwrap();
        for h in [
            "Content-Length",
            "Content-Range",
            "ETag",
            "Accept-Ranges",
            "Date",
        ] {
            assert!(exposed.contains(h), "{exposed}");
        }
    }
    server.stop().await;
    // A configured origin replaces `*`.
    let server = Running::start_with(&fx.lib.library(), "https://player.example", 0).await;
    let r = server.get(&url, &origin).await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://player.example")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_in_every_encoding_is_404() {
    let (fx, server) = setup().await;
    let id = &fx.id;
    let dir = fx.rendition_dir(0);
    assert_eq!(server.get(&fx.url("master.m3u8"), &[]).await.status, 200);
    let library = fx.lib.library().to_string_lossy().into_owned();
    for target in [
        format!("/media/{id}/track.json"),
        format!("/media/{id}/../track.json"),
        format!("/media/{id}/./master.m3u8"),
        format!("/media/{id}/%2e%2e/%2e%2e/catalog.sqlite"),
        format!("/media/{id}/%2E%2E%2F%2E%2E%2Fcatalog.sqlite"),
        format!("/media/{id}/..%2ftrack.json"),
        format!("/media/{id}/%252e%252e/track.json"),
        format!("/media/{id}/%252e%252e%252ftrack.json"),
        format!("/media/{id}/..%5c..%5ccatalog.sqlite"),
        format!("/media/{id}/master.m3u8%00.json"),
        format!("/media/{id}/%c0%ae%c0%ae/track.json"),
        format!("/media/{id}//etc/passwd"),
        format!("/media/{id}/%2fetc%2fpasswd"),
        format!("/media/{id}/{dir}/../../../catalog.sqlite"),
        format!("/media/{id}/{dir}/%2e%2e/track.json"),
        "/media/..%2f..%2fcatalog.sqlite/x.json".to_string(),
        format!("/media/%2e%2e/tracks/{id}/master.m3u8"),
        format!("/media/{}/master.m3u8", id.to_uppercase()),
        format!("/media/{id}/"),
        "/media/..".to_string(),
        "/api/tracks/..%2f..%2fcatalog".to_string(),
    ] {
        let r = server.get(&target, &[]).await;
        assert_eq!(r.status, 404, "{target}");
        assert!(
            !r.text().contains(&library) && !r.text().contains("/tmp"),
            "{target}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlink_out_of_library_is_404() {
    let fx = Fixture::new(SECONDS).await;
    let outside = fx.lib.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.json"), b"{\"secret\":1}").unwrap();
    std::fs::write(outside.join("master.m3u8"), b"#EXTM3U\n").unwrap();
    let link = |target: &std::path::Path, at: std::path::PathBuf| {
        std::os::unix::fs::symlink(target, at).unwrap();
    };
    link(
        &outside.join("secret.json"),
        fx.track_dir().join("leak.json"),
    );
    link(
        &outside,
        fx.track_dir().join(format!("{}.0123456789ab", "aac-lc-1k")),
    );
    let other_id = "0123456789abcdef01234567";
    link(&outside, fx.lib.layout().track_dir(other_id));
    let server = Running::start(&fx.lib.library()).await;
    for target in [
        fx.url("leak.json"),
        fx.url("aac-lc-1k.0123456789ab/secret.json"),
        format!("/media/{other_id}/master.m3u8"),
    ] {
        let r = server.get(&target, &[]).await;
        assert_eq!(r.status, 404, "{target}");
        assert!(!r.text().contains("secret"));
    }
    server.stop().await;
}
