//! `GET /api/prefetch`: hints with sizes and Link preload headers, validated parameters.

use super::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_hints_list_real_files_with_their_sizes_and_link_headers() {
    let (fx, server) = setup().await;
    let resp = server
        .get(
            &format!("/api/prefetch?track={}&bandwidth=100000000", fx.id),
            &[],
        )
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    let hint = &json["hints"][0];
    // Plenty of bandwidth: the top rung.
    let top = fx.record.renditions.last().unwrap();
    assert_eq!(hint["rendition"], top.id.as_str());
    assert_eq!(hint["codec"], top.codec.as_str());
    let mut files = vec![(&hint["init"]["url"], &hint["init"]["bytes"])];
    for s in hint["segments"].as_array().unwrap() {
        files.push((&s["url"], &s["bytes"]));
    }
    // A 3 s track with a short first segment: the window needs two segments.
    assert_eq!(files.len(), 3, "{hint}");
    let links = resp.header_all("link");
    for (url, bytes) in files {
        let url = url.as_str().unwrap();
        let file = server.get(url, &[]).await;
        assert_eq!(file.status, 200, "{url}");
        assert_eq!(file.body.len() as u64, bytes.as_u64().unwrap(), "{url}");
        let link = format!("<{url}>; rel=preload; as=fetch; crossorigin");
        assert!(links.contains(&link.as_str()), "{links:?} lacks {link}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_takes_a_queue_a_rendition_and_a_start_position() {
    let (fx, server) = setup().await;
    let low = &fx.record.renditions[0].id;
    let url = format!(
        "/api/prefetch?tracks={0},{0}&rendition={low}&from=2.5&seconds=0.1",
        fx.id
    );
    let resp = server.get(&url, &[]).await;
    assert_eq!(resp.status, 200);
    let json: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    let hints = json["hints"].as_array().unwrap();
    assert_eq!(hints.len(), 2);
    for hint in hints {
        assert_eq!(hint["rendition"], low.as_str());
        let segments = hint["segments"].as_array().unwrap();
        assert_eq!(segments.len(), 1, "{hint}");
        // The one segment holds media time priming + 2.5 s.
        let t = 2.5 + fx.record.gapless.priming_samples as f64 / fx.record.sample_rate as f64;
        let (start, duration) = (
            segments[0]["start"].as_f64().unwrap(),
            segments[0]["duration"].as_f64().unwrap(),
        );
        assert!(start <= t && t < start + duration, "{hint}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_prefetch_requests_get_a_clear_400_or_404() {
    let (fx, server) = setup().await;
    for (query, status, words) in [
        ("", 400, "track=ID"),
        ("track=..%2F..%2Fetc", 400, "not a track id"),
        ("track=000000000000000000000000", 404, "not found"),
        (
            &format!("track={}&rendition=opus-9k", fx.id),
            400,
            "no rendition",
        ),
        (&format!("track={}&from=-3", fx.id), 400, "from"),
        (&format!("track={}&bandwidth=fast", fx.id), 400, "bandwidth"),
    ] {
        let resp = server.get(&format!("/api/prefetch?{query}"), &[]).await;
        assert_eq!(resp.status, status, "{query}");
        let body = String::from_utf8_lossy(&resp.body);
        assert!(body.contains(words), "{query}: {body}");
    }
    server.stop().await;
}
