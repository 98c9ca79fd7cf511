//! The hot path (src/server/hot.rs): a GET of a segment already in memory is answered before
//! routing. Its answers must be the router's, header for header and byte for byte.

use std::time::{Duration, SystemTime};

use axum::http::Request;
use segue::config::ServeConfig;
use segue::server::AppState;
use segue::server::hot::HotPath;
use segue::server::signing::Signer;

use crate::support::*;

/// Request header fields of a case.
type Headers<'a> = Vec<(&'a str, &'a str)>;

/// The response minus its Date (the one field that may differ between two answers).
fn comparable(r: &Resp) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut headers: Vec<_> = r
        .headers
        .iter()
        .filter(|(n, _)| n != "date")
        .cloned()
        .collect();
    headers.sort();
    (r.status, headers, r.body.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_segments_get_the_routers_answer_from_the_hot_path() {
    let (fx, server) = setup().await;
    let top = fx.record.renditions.len() - 1;
    let etag = server.etag(&fx.segment().0).await;
    let origin = ("Origin", "https://player.example");
    let cases: [(&str, Headers, u16); 5] = [
        ("plain", vec![], 200),
        ("cross-origin", vec![origin], 200),
        ("range", vec![("Range", "bytes=10-99")], 206),
        ("suffix range", vec![("Range", "bytes=-500"), origin], 206),
        ("gzip asked", vec![("Accept-Encoding", "gzip, br")], 200),
    ];
    // Each case on its own segment, so its first request is a miss the router answers and
    // its second a hit the hot path answers.
    let (first, _) = fx.segment();
    let mut segments = (0..=top).flat_map(|r| {
        let dir = fx.rendition_dir(r).to_string();
        let mut names: Vec<_> = std::fs::read_dir(fx.track_dir().join(&dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".m4s"))
            .collect();
        names.sort();
        names.into_iter().map(move |n| format!("{dir}/{n}"))
    });
    for (name, headers, status) in &cases {
        let url = loop {
            let url = fx.url(&segments.next().expect("a segment per case"));
            if url != first {
                break url;
            }
        };
        let cold = server.get(&url, headers).await;
        let hot = server.get(&url, headers).await;
        assert_eq!(cold.status, *status, "{name}");
        assert_eq!(comparable(&hot), comparable(&cold), "{name}");
    }
    // A revalidation of a cached segment: 304 with the same validators either way.
    let (url, _) = fx.segment();
    let cold = server.get(&url, &[("If-None-Match", &etag)]).await;
    let hot = server.get(&url, &[("If-None-Match", &etag)]).await;
    assert_eq!(cold.status, 304);
    assert_eq!(comparable(&hot), comparable(&cold));
    // The same file under a percent-encoded path goes to the router, with the same answer.
    let encoded = url.replacen(".m4s", "%2Em4s", 1);
    assert_eq!(
        comparable(&server.get(&encoded, &[]).await),
        comparable(&server.get(&url, &[]).await)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_urls_of_cached_segments_take_the_hot_path_only_with_a_valid_token() {
    const KEY: &str = "an-operator-secret-of-32-bytes!!";
    let fx = Fixture::new(SECONDS).await;
    let config = ServeConfig::new(fx.lib.library().into(), "127.0.0.1:0", "*", 64)
        .unwrap()
        .with_signing(KEY, 3600)
        .unwrap();
    let state = tokio::task::block_in_place(|| AppState::new(&config)).unwrap();
    // A hot path over the server's own state (its cache), asked directly.
    let hot = HotPath::new(&state);
    let takes = |target: &str| {
        hot.answer(&Request::get(target).body(()).unwrap())
            .is_some()
    };
    let server = Running::start_state(state).await;

    let now = SystemTime::now();
    let signer = Signer::new(Some(KEY.as_bytes().to_vec()), Duration::from_secs(60));
    let token = |scope: &str, at| signer.token(scope, at).unwrap();
    let scope = format!("/media/{}/", fx.id);
    let (url, bytes) = fx.segment();
    let signed = format!("/t/{}{url}", token(&scope, now));
    assert!(!takes(&signed), "not in memory yet: the router reads it");
    let cold = server.get(&signed, &[]).await;
    assert_eq!(cold.status, 200);
    assert!(cold.body == bytes);
    assert!(takes(&signed), "in memory now, with a valid token");
    // Over the socket, the hot path's answer is the router's.
    assert_eq!(
        comparable(&server.get(&signed, &[]).await),
        comparable(&cold)
    );

    // Without a valid token the cached file is the guard's to refuse, never the hot path's.
    let expired = token(&scope, now - Duration::from_secs(3 * 86_400));
    let forged = Signer::new(
        Some(b"somebody else's key".to_vec()),
        Duration::from_secs(60),
    )
    .token(&scope, now)
    .unwrap();
    let other_track = token("/media/000000000000000000000000/", now);
    for target in [
        url.clone(),
        format!("/t/{expired}{url}"),
        format!("/t/{forged}{url}"),
        format!("/t/{other_track}{url}"),
        format!("/t/{}{url}", token("/ws", now)),
        format!("/t/garbage{url}"),
    ] {
        assert!(!takes(&target), "{target}");
        assert_eq!(server.get(&target, &[]).await.status, 403, "{target}");
    }
    server.stop().await;
}
