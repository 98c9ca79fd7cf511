//! The hot path (src/server/hot.rs): a GET of a segment already in memory is answered before
//! routing. Its answers must be the router's, header for header and byte for byte.

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
    let etag = server.get(&fx.segment().0, &[]).await;
    let etag = etag.header("etag").unwrap().to_string();
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
